"use strict";
// Swagger UI's start, kept out of the page so that its Content-Security-Policy needs no
// inline script. The page names the OpenAPI document in data-openapi-url.
const root = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({
  url: root.dataset.openapiUrl,
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout",
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null,
});
