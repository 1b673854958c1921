"""User JWTs, the admin token, bearer parsing and secret bootstrapping (SPEC §3)."""

from __future__ import annotations

import base64
import hmac
import json
import stat
from pathlib import Path
from typing import Any

import jwt
import pytest

import chatwatch.auth as auth_module
from chatwatch.auth import (
    Authenticator,
    AuthError,
    AuthFailure,
    Principal,
    bearer,
    load_or_create_secret,
)
from chatwatch.clock import FakeClock

# 64 bytes: long enough for HS512 too, so PyJWT emits no key-length warning.
SECRET = "s3cret-" + "x" * 57
OTHER_SECRET = "other-" + "y" * 58
ADMIN_TOKEN = "admin-token-0123456789abcdef"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def auth(clock: FakeClock) -> Authenticator:
    return Authenticator(SECRET, ADMIN_TOKEN, clock)


def b64url(obj: dict[str, Any]) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def claims_for(clock: FakeClock, **extra: Any) -> dict[str, Any]:
    now = int(clock.time())
    return {"sub": "alice", "role": "user", "iat": now, "exp": now + 600, **extra}


def refused(auth: Authenticator, credential: str | None) -> AuthFailure:
    """The failure kind verify() raises for ``credential``."""
    with pytest.raises(AuthError) as info:
        auth.verify(credential)
    return info.value.failure


# --- minting and verifying --------------------------------------------------------------


def test_minted_user_token_verifies(auth: Authenticator) -> None:
    """A freshly minted user token verifies to that user with role user (fake clock time)."""
    expected = Principal(user_id="alice", role="user", via="jwt")
    assert expected == auth.verify(auth.mint("alice"))


def test_minted_admin_token_verifies_as_admin(auth: Authenticator) -> None:
    """A token minted with role admin verifies as an admin principal."""
    principal = auth.verify(auth.mint("root", role="admin"))
    assert (principal.user_id, principal.role, principal.is_admin) == ("root", "admin", True)


def test_mint_writes_hs256_with_sub_role_iat_exp(auth: Authenticator, clock: FakeClock) -> None:
    """The token's header says HS256 and its claims are sub, role, iat and exp = now + ttl."""
    token = auth.mint("alice", ttl=90)
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    now = int(clock.time())
    expected = ("HS256", {"sub": "alice", "role": "user", "iat": now, "exp": now + 90})
    assert expected == (header["alg"], claims)


def test_token_valid_just_before_expiry(auth: Authenticator, clock: FakeClock) -> None:
    """A 10 s token still verifies 9.5 s later (fake clock moved, no sleep)."""
    token = auth.mint("alice", ttl=10)
    clock.advance(9.5)
    assert auth.verify(token).user_id == "alice"


def test_expired_token_is_refused_without_sleeping(auth: Authenticator, clock: FakeClock) -> None:
    """A 10 s token is refused as expired once the fake clock reaches its exp."""
    token = auth.mint("alice", ttl=10)
    clock.advance(10)
    assert refused(auth, token) == AuthFailure.EXPIRED


def test_sub_second_ttl_token_is_not_born_expired(auth: Authenticator) -> None:
    """A token minted with ttl=0.5 s verifies at once (exp is not truncated to now)."""
    assert auth.verify(auth.mint("alice", ttl=0.5)).user_id == "alice"


def test_token_minted_on_a_past_clock_is_expired_now(clock: FakeClock) -> None:
    """A token minted a day ago with a 1 h ttl is expired for today's authenticator."""
    old = Authenticator(SECRET, ADMIN_TOKEN, FakeClock(start=clock.time() - 86400))
    token = old.mint("alice", ttl=3600)
    assert refused(Authenticator(SECRET, ADMIN_TOKEN, clock), token) == AuthFailure.EXPIRED


# --- forged and malformed tokens --------------------------------------------------------


def test_token_signed_with_another_secret_is_refused(auth: Authenticator, clock: FakeClock) -> None:
    """A well-formed HS256 token signed with a different secret is invalid."""
    forged = jwt.encode(claims_for(clock), OTHER_SECRET, algorithm="HS256")
    assert refused(auth, forged) == AuthFailure.INVALID


def test_tampered_payload_is_refused(auth: Authenticator) -> None:
    """Swapping the payload for role=admin while keeping the signature is invalid."""
    header, payload, signature = auth.mint("alice").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    assert refused(auth, f"{header}.{b64url(claims)}.{signature}") == AuthFailure.INVALID


def test_alg_none_token_is_refused(auth: Authenticator, clock: FakeClock) -> None:
    """A hand-made token with header alg "none" and an empty signature is invalid."""
    token = b64url({"alg": "none", "typ": "JWT"}) + "." + b64url(claims_for(clock)) + "."
    assert refused(auth, token) == AuthFailure.INVALID


def test_alg_none_token_claiming_admin_is_refused(auth: Authenticator, clock: FakeClock) -> None:
    """An unsigned alg "None" token claiming role admin is invalid, not an admin."""
    token = (
        b64url({"alg": "None", "typ": "JWT"}) + "." + b64url(claims_for(clock, role="admin")) + "."
    )
    assert refused(auth, token) == AuthFailure.INVALID


def test_rs256_claimed_token_is_refused(auth: Authenticator, clock: FakeClock) -> None:
    """A token whose header claims RS256 (hand-made signature) is invalid."""
    signature = base64.urlsafe_b64encode(b"\x01" * 256).rstrip(b"=").decode()
    token = b64url({"alg": "RS256", "typ": "JWT"}) + "." + b64url(claims_for(clock)) + "."
    assert refused(auth, token + signature) == AuthFailure.INVALID


def test_hs512_token_with_the_right_secret_is_refused(
    auth: Authenticator, clock: FakeClock
) -> None:
    """A token signed HS512 with the real secret is still refused: only HS256 is accepted."""
    token = jwt.encode(claims_for(clock), SECRET, algorithm="HS512")
    assert refused(auth, token) == AuthFailure.INVALID


def test_hs256_signature_over_alg_none_header_is_refused(
    auth: Authenticator, clock: FakeClock
) -> None:
    """A real HS256 signature glued onto an alg "none" header is invalid."""
    head = b64url({"alg": "none", "typ": "JWT"})
    body = b64url(claims_for(clock))
    sig = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), "sha256").digest()
    token = f"{head}.{body}." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    assert refused(auth, token) == AuthFailure.INVALID


@pytest.mark.parametrize("missing", ["sub", "exp"])
def test_token_without_required_claim_is_refused(
    auth: Authenticator, clock: FakeClock, missing: str
) -> None:
    """A correctly signed token lacking sub or exp is invalid."""
    claims = claims_for(clock)
    del claims[missing]
    assert refused(auth, jwt.encode(claims, SECRET, algorithm="HS256")) == AuthFailure.INVALID


@pytest.mark.parametrize("role", ["root", "ADMIN", "", 1, None])
def test_token_with_bad_role_is_refused(auth: Authenticator, clock: FakeClock, role: Any) -> None:
    """A signed token whose role is not user/admin (root, ADMIN, empty, 1, null) is invalid."""
    token = jwt.encode(claims_for(clock, role=role), SECRET, algorithm="HS256")
    assert refused(auth, token) == AuthFailure.INVALID


@pytest.mark.parametrize("sub", ["", "x" * 65, 42])
def test_token_with_bad_sub_is_refused(auth: Authenticator, clock: FakeClock, sub: Any) -> None:
    """A signed token whose sub is empty, 65 chars or a number is invalid."""
    token = jwt.encode(claims_for(clock, sub=sub), SECRET, algorithm="HS256")
    assert refused(auth, token) == AuthFailure.INVALID


def test_token_without_role_defaults_to_user(auth: Authenticator, clock: FakeClock) -> None:
    """A signed token with no role claim is a plain user, never an admin."""
    claims = claims_for(clock)
    del claims["role"]
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    assert auth.verify(token).role == "user"


def test_non_numeric_exp_is_invalid_not_expired(auth: Authenticator, clock: FakeClock) -> None:
    """A signed token whose exp is the string "9999999999" is reported invalid, not expired."""
    token = jwt.encode(claims_for(clock, exp="9999999999"), SECRET, algorithm="HS256")
    assert refused(auth, token) == AuthFailure.INVALID


def test_token_not_valid_before_nbf_is_refused(auth: Authenticator, clock: FakeClock) -> None:
    """A signed token whose nbf is an hour ahead of the (fake) clock is refused."""
    token = jwt.encode(claims_for(clock, nbf=int(clock.time()) + 3600), SECRET, algorithm="HS256")
    assert refused(auth, token) == AuthFailure.INVALID


def test_token_past_its_nbf_is_accepted(auth: Authenticator, clock: FakeClock) -> None:
    """The same nbf-in-an-hour token verifies once the fake clock has moved past nbf."""
    token = jwt.encode(
        claims_for(clock, nbf=int(clock.time()) + 3600, exp=int(clock.time()) + 7200),
        SECRET,
        algorithm="HS256",
    )
    clock.advance(3601)
    assert auth.verify(token).user_id == "alice"


def test_verification_follows_the_injected_clock_not_the_wall_clock() -> None:
    """A token minted and checked on a fake clock a year ahead of real time verifies (iat/nbf)."""
    ahead = FakeClock(start=4_000_000_000.0)
    auth = Authenticator(SECRET, ADMIN_TOKEN, ahead)
    assert auth.verify(auth.mint("alice", ttl=60)).user_id == "alice"


@pytest.mark.parametrize("garbage", ["abc", "a.b.c", "....", "Bearer x", "ä"])
def test_garbage_credential_is_invalid(auth: Authenticator, garbage: str) -> None:
    """Strings that are neither the admin token nor a JWT are invalid."""
    assert refused(auth, garbage) == AuthFailure.INVALID


@pytest.mark.parametrize("empty", [None, ""])
def test_missing_credential_is_reported_missing(auth: Authenticator, empty: str | None) -> None:
    """No credential (None or empty) is MISSING, not INVALID."""
    assert refused(auth, empty) == AuthFailure.MISSING


# --- the admin token --------------------------------------------------------------------


def test_admin_token_is_an_admin_principal(auth: Authenticator) -> None:
    """The static admin token verifies to the admin principal via admin_token."""
    assert Principal(user_id="admin", role="admin", via="admin_token") == auth.verify(ADMIN_TOKEN)


@pytest.mark.parametrize(
    "near", [ADMIN_TOKEN[:-1], ADMIN_TOKEN + "x", ADMIN_TOKEN.upper(), " " + ADMIN_TOKEN]
)
def test_near_admin_token_is_refused(auth: Authenticator, near: str) -> None:
    """A prefix, an extension, the upper-cased or space-padded admin token is refused."""
    assert refused(auth, near) == AuthFailure.INVALID


def test_admin_token_compared_in_constant_time(
    auth: Authenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admin-token check goes through hmac.compare_digest, with the candidate and token."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", spy)
    with pytest.raises(AuthError):
        auth.verify("not-the-admin-token")
    auth.verify(ADMIN_TOKEN)
    expected = [
        (b"not-the-admin-token", ADMIN_TOKEN.encode()),
        (ADMIN_TOKEN.encode(), ADMIN_TOKEN.encode()),
    ]
    assert expected == calls


# --- bearer() ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def", "abc.def"),
        ("bearer abc", "abc"),
        ("BEARER   abc  ", "abc"),
        ("Basic dXNlcjpwYXNz", None),
        ("Token abc", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Bearer    ", None),
        ("Bearerabc", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_parses_the_authorization_header(header: str | None, token: str | None) -> None:
    """Only a Bearer scheme (any case) with a non-blank token yields the token."""
    assert token == bearer(header)


# --- secret bootstrapping ---------------------------------------------------------------


def test_secret_is_created_with_mode_0600(tmp_path: Path) -> None:
    """A missing secret file is created (in a missing directory) with mode 0600 and content."""
    path = tmp_path / "data" / "secret"
    value, created = load_or_create_secret(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    assert (True, 0o600, value) == (created, mode, path.read_text().strip())
    assert len(value) >= 32


def test_secret_is_reused_on_the_next_call(tmp_path: Path) -> None:
    """A second call returns the same secret and reports it was not created."""
    path = tmp_path / "secret"
    first, _ = load_or_create_secret(path)
    assert (first, False) == load_or_create_secret(path)


def test_existing_secret_file_is_kept(tmp_path: Path) -> None:
    """A secret the operator wrote is returned stripped and the file left unchanged."""
    path = tmp_path / "secret"
    path.write_text("operator-chosen-secret\n")
    assert load_or_create_secret(path) == ("operator-chosen-secret", False)
    assert path.read_text() == "operator-chosen-secret\n"


def test_secrets_differ_between_data_dirs(tmp_path: Path) -> None:
    """Two fresh data directories get two different random secrets."""
    a, _ = load_or_create_secret(tmp_path / "a" / "secret")
    b, _ = load_or_create_secret(tmp_path / "b" / "secret")
    assert a != b


@pytest.mark.parametrize("content", ["", "\n", "   \n"])
def test_empty_secret_file_is_replaced_by_a_real_secret(tmp_path: Path, content: str) -> None:
    """An empty or blank secret file (a crash mid-write) yields a fresh non-empty secret."""
    path = tmp_path / "secret"
    path.write_text(content)
    value, _ = load_or_create_secret(path)
    assert (True, value) == (len(value) >= 32, path.read_text().strip())


# --- the admin token file, rotated while the server runs --------------------------------


def _token_file(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "admin_token"
    return path, load_or_create_secret(path)[0]


def test_rotated_admin_token_file_takes_effect_at_the_next_request(
    tmp_path: Path, clock: FakeClock
) -> None:
    """After replace_secret on the file, the old token is refused and the new one admitted
    at once, with no time passing (the Authenticator used to keep the token of its start)."""
    path, old = _token_file(tmp_path)
    changes: list[str] = []
    auth = Authenticator(
        SECRET, auth_module.AdminTokenFile(path, old, lambda t, _st: changes.append(t)), clock
    )
    before = auth.verify(old).via
    new = auth_module.replace_secret(path)
    with pytest.raises(AuthError) as refused:
        auth.verify(old)
    assert (before, refused.value.failure, auth.verify(new).via, changes) == (
        "admin_token",
        AuthFailure.INVALID,
        "admin_token",
        [new],
    )


def test_new_admin_token_is_admitted_even_before_the_old_one_is_seen_again(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The first request after a rotation may carry the new token: it is admitted."""
    path, old = _token_file(tmp_path)
    auth = Authenticator(SECRET, auth_module.AdminTokenFile(path, old), clock)
    new = auth_module.replace_secret(path)
    assert auth.verify(new) == Principal(user_id="admin", role="admin", via="admin_token")


def test_admin_jwts_and_user_jwts_survive_a_rotation(tmp_path: Path, clock: FakeClock) -> None:
    """Rotating the admin token leaves JWTs (admin and user role) valid."""
    path, old = _token_file(tmp_path)
    auth = Authenticator(SECRET, auth_module.AdminTokenFile(path, old), clock)
    admin_jwt, user_jwt = auth.mint("ops", "admin"), auth.mint("alice")
    auth_module.replace_secret(path)
    assert (auth.verify(admin_jwt).role, auth.verify(user_jwt).role) == ("admin", "user")


def test_a_deleted_admin_token_file_keeps_the_token_in_force(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Deleting the file is not a rotation: the token in force keeps working."""
    path, old = _token_file(tmp_path)
    auth = Authenticator(SECRET, auth_module.AdminTokenFile(path, old), clock)
    path.unlink()
    assert auth.verify(old).via == "admin_token"


def test_replace_secret_is_private_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    """replace_secret writes mode 0600 and leaves only the target in the directory."""
    path, _ = _token_file(tmp_path)
    value = auth_module.replace_secret(path)
    assert (
        path.read_text(),
        stat.S_IMODE(path.stat().st_mode),
        [p.name for p in tmp_path.iterdir()],
    ) == (value + "\n", 0o600, ["admin_token"])


def test_operator_names_the_jwt_subject_or_the_admin_token() -> None:
    """Audit identity: an admin JWT is its sub; the shared token is 'admin-token'."""
    assert (
        Principal(user_id="ops", role="admin", via="jwt").operator,
        Principal(user_id="admin", role="admin", via="admin_token").operator,
    ) == ("ops", "admin-token")
