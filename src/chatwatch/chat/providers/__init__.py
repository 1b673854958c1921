"""AI providers behind one interface: ``AIProvider.stream``."""
