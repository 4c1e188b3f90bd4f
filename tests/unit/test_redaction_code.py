"""Redaction on code-heavy text (issue 15): secret-named variables bound to code stay intact,
literal secrets go, placeholders are kept, dates and times are never phones, reserved IPs follow
``redaction.keep_reserved_ips``; plus a property test over generated program text."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratchet.config import RedactionConfig
from ratchet.redaction import Redactor


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


# The shapes of issue 15 and their kin: nothing in them is a secret value.
CODE_KEPT = [
    "token = await requestAccessToken(client, scope)",
    'api_key = conn.get("ApiKey")',
    "api_key=$(yq eval '.api_key' config.yaml)",
    'password = driver.findElement(By.id("password")).getText();',
    'echo "$api_key" | base64',
    "curl -u user:$api_key https://example.org",
    "for (const std::string& token : tokens) {",
    "Set the token:\n```bash\nexport X=1\n```",
    "token:\n```yaml\nname: demo\n```",
    'api_key = os.environ["OPENAI_API_KEY"]',
    "password: ${DB_PASSWORD}",
    'token: "{{ .Values.token }}"',
    'url = f"https://api/{token}"\nsecret = {token}',
    "password = None",
    "token = tokens[0]",
    "self.password = password",
    "const apiKey = process.env.API_KEY;",
    "token: localStorage.getItem('token'),",
    'String token = request.getHeader("Authorization");',
    'token := os.Getenv("TOKEN")',
    "UPDATE users SET password = ? WHERE id = ?;",
    "WHERE password = crypt(:input, password)",
    "api_key: !ENV ${API_KEY}",
    "secret = lambda: vault.read(path)",
    "password = hash_password(form.password.data)",
    "DB_PASSWORD=${DB_PASSWORD:-}",
    "client_secret: clientSecret,",
    "Password: reset link sent",
    "The token: see the settings page.",
    "password=password,",
    "'password' => $request->input('password'),",
]


@pytest.mark.parametrize("text", CODE_KEPT)
def test_code_expressions_are_kept(redactor: Redactor, text: str) -> None:
    assert redactor.redact_text(text) == (text, {})


@pytest.mark.parametrize("text", CODE_KEPT)
def test_code_expressions_are_kept_in_columns(redactor: Redactor, text: str) -> None:
    out, counts = redactor.redact_array(pa.array([text, "x"], pa.string()))
    assert out.to_pylist() == [text, "x"] and counts == {}


PLACEHOLDERS = [
    'api_key = "your_api_key_here"',
    "OPENAI_API_KEY=<your-api-key>",
    'password = "<password>"',
    'password = "my_password"',
    'token = "YOUR_TOKEN"',
    'api_key = "xxxxxxxx"',
    'password: "********"',
    "JWT_SECRET=changeme",
    'secret = "REPLACE_ME"',
    'api_key = "..."',
]


@pytest.mark.parametrize("text", PLACEHOLDERS)
def test_obvious_placeholders_are_kept(redactor: Redactor, text: str) -> None:
    assert redactor.redact_text(text) == (text, {})


LITERALS = [
    ('password = "Tr0ub4dor&3"', 'password = "[PASSWORD]"'),
    ("password = 'correcthorse'", "password = '[PASSWORD]'"),
    ("DB_PASSWORD=S3cure!Pass_2024", "DB_PASSWORD=[PASSWORD]"),
    ('dbPassword := "hunter2hunter2"', 'dbPassword := "[PASSWORD]"'),
    ("ALTER USER app WITH PASSWORD 'N0tMyD0g!';", "ALTER USER app WITH PASSWORD '[PASSWORD]';"),
    ("'password' => 'Zx9#kLm2Qw',", "'password' => '[PASSWORD]',"),
    ('{\\"token\\": \\"a8f5f167f44f4964e6c9\\"}', '{\\"token\\": \\"[SECRET]\\"}'),
    ("STRIPE_SECRET_KEY=sk_live_4eC39HqLyjWDarjtT1zdp7dc", "STRIPE_SECRET_KEY=[SECRET]"),
    ("client_secret: xK8vP2mQ9rT4wZ7bN1cF5hJ3", "client_secret: [SECRET]"),
    ("export TOKEN=c3VwZXJzZWNyZXQ6dG9rZW4xMjM=", "export TOKEN=[SECRET]"),
    ("token=abcd1234efgh&next=1", "token=[SECRET]&next=1"),
    ("pwd=123456", "pwd=[PASSWORD]"),
    ("redis://:p4ssw0rd@localhost:6379/0", "redis://:[PASSWORD]@localhost:6379/0"),  # no user
    ("my password=Hunter2-Hunter2.", "my password=[PASSWORD]."),  # a sentence's full stop
    ("(password=Hunter2-Hunter2)", "(password=[PASSWORD])"),
]


@pytest.mark.parametrize(("text", "expected"), LITERALS)
def test_literal_secrets_are_replaced(redactor: Redactor, text: str, expected: str) -> None:
    assert redactor.redact_text(text)[0] == expected


def test_key_line_never_swallows_the_next_line(redactor: Redactor) -> None:
    text = "api_key:\nsk_live_4eC39HqLyjWDarjtT1zdp7dc"
    assert redactor.redact_text(text) == (text, {})


DATES_AND_VERSIONS = [
    "03/03/2023 19:56",
    "15:36:45.0000000",
    "2023-03-03 19:56:12.123 INFO started",
    "2023-03-03T19:56:45.0000000+00:00 done",
    "elapsed 00:01:23.4567890",
    "on 03.03.2023 19:56:12 and 2024/01/15 08:30:00.123456",
    "Microsoft Windows [Version 10.0.19045.3803]",
    "Chrome/120.0.6099.109 Safari/537.36",
    "build 1.0.0-20231015.123456, version 2023.10.0",
    "numpy==1.26.4 certifi==2023.11.17",
    "pywin32==1.2.3.4 and pkg~=10.0.19045.3 and pkg>=2.3.4.5",
    "ts=1700000000 and ts=1700000000123",
    "Ticket #9123456780 closed",
    "OID 1.3.6.1.4.1.2021.10.1.3.1",
]


@pytest.mark.parametrize("text", DATES_AND_VERSIONS)
def test_dates_times_versions_are_not_phones(redactor: Redactor, text: str) -> None:
    assert redactor.redact_text(text) == (text, {})


RESERVED = [
    "127.0.0.1",
    "0.0.0.0",  # noqa: S104 - text to redact, not a bind address
    "::1",
    "2001:db8::1",
    "255.255.255.0",
    "::ffff:127.0.0.1",
]


@pytest.mark.parametrize("ip", RESERVED)
def test_reserved_ips_kept_by_default_and_redacted_when_configured(
    redactor: Redactor, ip: str
) -> None:
    text = f"listen on {ip} now"
    assert redactor.redact_text(text) == (text, {})
    strict = Redactor(RedactionConfig(keep_reserved_ips=False))
    assert strict.redact_text(text) == ("listen on [IP_ADDRESS] now", {"IP_ADDRESS": 1})


@pytest.mark.parametrize(
    "ip", ["10.0.0.1", "192.168.1.20", "81.2.69.142", "fe80::1", "2a00:1450::1"]
)
def test_owned_ips_always_redacted(redactor: Redactor, ip: str) -> None:
    assert redactor.redact_text(f"host {ip} up") == ("host [IP_ADDRESS] up", {"IP_ADDRESS": 1})


def test_keep_reserved_ips_changes_the_version() -> None:
    assert Redactor(RedactionConfig(keep_reserved_ips=False)).version != Redactor().version


# --- property: program text with secret-named variables bound to expressions is left alone ---
_NAMES = [
    "password",
    "passwd",
    "pwd",
    "token",
    "api_key",
    "apiKey",
    "secret",
    "client_secret",
    "access_token",
    "DB_PASSWORD",
    "SECRET_KEY",
    "authToken",
    "auth_token",
    "refresh_token",
]
_ident = st.from_regex(r"[a-z][a-z_]{0,11}", fullmatch=True)
_Ident = st.from_regex(r"[A-Z][A-Za-z]{0,11}", fullmatch=True)
_small = st.integers(0, 99999).map(str)
_atom = st.one_of(
    _ident, _Ident, _small, st.sampled_from(["None", "null", "nil", "true", "False", "undefined"])
)


def _expr(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda f, a: f"{f}({a})", _ident, children),  # call
        st.builds(lambda a, b: f"{a}.{b}", _ident, _ident),  # attribute
        st.builds(lambda a, b: f"{a}[{b}]", _ident, children),  # index
        st.builds(
            lambda a, k: f'{a}["{k}"]', st.sampled_from(["os.environ", "config", "secrets"]), _Ident
        ),
        st.builds(lambda a: f"await {a}", children),
        st.builds(lambda a: f"new {a}()", _Ident),
        st.builds(lambda a, b: f"{a} + {b}", children, children),
        st.builds(lambda a: f"${a}", _Ident),  # shell variables
        st.builds(lambda a: f"${{{a}}}", _Ident),
        st.builds(lambda a: f"$({a} --print)", _ident),
        st.builds(lambda a: f"{{{a}}}", _ident),  # template placeholder
        st.builds(lambda a: f"{{{{ {a} }}}}", _ident),
        st.builds(lambda a: f'f"{{{a}}}"', _ident),
        st.builds(lambda a: f"lambda: {a}", children),
        st.builds(lambda a: f"`{a}`", _ident),
    )


_rhs = st.recursive(_atom, _expr, max_leaves=4)
_line = st.builds(
    lambda name, sep, rhs, end: f"{name}{sep}{rhs}{end}",
    st.sampled_from(_NAMES),
    st.sampled_from([" = ", "=", " := ", ": ", " => ", ":"]),
    _rhs,
    st.sampled_from(["", ";", ",", ")", " // note", "  # set"]),
)
_program = st.lists(
    st.one_of(_line, st.builds(lambda a: f"if {a}:", _rhs), st.just("```python"), st.just("}")),
    min_size=1,
    max_size=6,
).map("\n".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_program)
def test_property_expressions_bound_to_secret_names_are_unchanged(text: str) -> None:
    redactor = _PROPERTY_REDACTOR
    assert redactor.redact_text(text)[0] == text


_PROPERTY_REDACTOR = Redactor()
