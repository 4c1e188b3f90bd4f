"""Checksum validators: the reason a 16-digit order number is left alone and a card is not.

Each function takes the matched text (separators included) and answers a yes/no, or, for the
detectors whose regex may swallow a trailing group (cards, IBANs), the length of the longest valid
prefix. They never raise on odd input and never log the value they are given.
"""

from __future__ import annotations

import hashlib
import ipaddress


def only_digits(text: str) -> str:
    """The digits of ``text`` in order (separators, URL-encoded spaces and ``+`` dropped)."""
    return "".join(filter(str.isdigit, text.replace("%20", "")))


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_network_ok(digits: str) -> bool:
    """Issuer prefix and length of the major networks (Visa, Mastercard incl. 2-series, Amex,
    Discover, JCB, Diners, UnionPay, Maestro); a Luhn-valid number with no known issuer is far more
    likely an id than a card."""
    n = len(digits)
    p2, p4 = int(digits[:2]), int(digits[:4])
    if digits[0] == "4":
        return n in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return n == 16
    if p2 in (34, 37):
        return n == 15
    if digits.startswith("6011") or p2 == 65 or 644 <= int(digits[:3]) <= 649:
        return 16 <= n <= 19
    if 3528 <= p4 <= 3589:
        return 16 <= n <= 19
    if p2 in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:
        return 14 <= n <= 19
    if p2 == 62:
        return 16 <= n <= 19
    if p2 in (50, 56, 57, 58) or digits[0] == "6":
        return 12 <= n <= 19
    return False


def _card_network_known(digits: str) -> bool:
    """The prefix belongs to a network (UATP's 1 included), whatever the length: a 16-digit
    number with the same prefix would be a card of it."""
    return digits[0] == "1" or _card_network_ok(digits[:15].ljust(16, "0"))


def card_ok(digits: str) -> bool:
    """A plausible payment card: 12-19 digits, a known issuer prefix and length, Luhn-valid."""
    n = len(digits)
    if not 12 <= n <= 19 or not luhn_ok(digits):
        return False
    # 15 digits: any network's prefix (UATP, Amex, and the 15-digit numbers others issue too).
    return _card_network_ok(digits) or (n == 15 and _card_network_known(digits))


def card_prefix_len(text: str) -> int:
    """Length of the longest prefix of ``text`` that is a valid card number, or 0.

    The card regex may take a trailing group ("4111 1111 1111 1111 123" matches whole); the card
    is then the 16-digit prefix. Cuts happen only at the end of a digit group.
    """
    digits = only_digits(text)
    if len(digits) < 12 or digits[0] not in "123456":
        return 0
    # text positions just after each digit that ends a group (end of text or a non-digit next)
    ends: list[tuple[int, int]] = []  # (text position, digits so far)
    count = 0
    for pos, ch in enumerate(text):
        if ch.isdigit():
            count += 1
            if pos + 1 == len(text) or not text[pos + 1].isdigit():
                ends.append((pos + 1, count))
    for pos, count in reversed(ends):
        if count < 12:
            break
        if card_ok(digits[:count]):
            return pos
    return 0


# ISO 13616 lengths per country (the IBAN registry); an unknown country is rejected.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def iban_ok(compact: str) -> bool:
    """ISO 7064 mod-97-10 over an IBAN without spaces, with the country's registered length."""
    compact = compact.upper()
    if len(compact) != IBAN_LENGTHS.get(compact[:2], -1) or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(ch, 36)) for ch in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


def iban_check_digits(country: str, bban: str) -> str:
    """The two check digits that make ``country + digits + bban`` pass :func:`iban_ok` (the
    sample generator plants valid IBANs with them)."""
    numeric = "".join(str(int(ch, 36)) for ch in (bban + country + "00").upper())
    return f"{98 - int(numeric) % 97:02d}"


def iban_prefix_len(text: str) -> int:
    """Length of the longest prefix of ``text`` that is a valid IBAN, or 0.

    Written with separators (spaces or dashes, in any grouping), an IBAN is only cut before a
    separator; written compact, anywhere.
    """
    spaced = " " in text or "-" in text
    for end in range(len(text), 4, -1):
        if text[end - 1] in " -" or (spaced and end < len(text) and text[end] not in " -"):
            continue
        if iban_ok(text[:end].replace(" ", "").replace("-", "")):
            return end
    return 0


def ssn_ok(text: str) -> bool:
    """US SSN rules: area not 000, 666 or 9xx; group not 00; serial not 0000."""
    d = only_digits(text)
    if len(d) != 9:
        return False
    area, group, serial = d[:3], d[3:5], d[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {ch: i for i, ch in enumerate(_B58)}


def base58check_ok(text: str) -> bool:
    """Bitcoin legacy (P2PKH ``1…``) and P2SH (``3…``) addresses: base58 with a 4-byte
    double-SHA256 checksum and a 21-byte payload."""
    num = 0
    for ch in text:
        idx = _B58_INDEX.get(ch)
        if idx is None:
            return False
        num = num * 58 + idx
    raw = num.to_bytes(25, "big") if num.bit_length() <= 200 else b""
    if len(raw) != 25:
        return False
    leading = len(text) - len(text.lstrip("1"))
    if raw[:leading].strip(b"\0") or (leading == 0 and raw[0] == 0):
        return False
    payload, check = raw[:21], raw[21:]
    return hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] == check


_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_CONSTS = (1, 0x2BC830A3)  # bech32 (segwit v0), bech32m (v1+, taproot)


_BECH32_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _gen_xor(top: int) -> int:
    out = 0
    for i in range(5):
        if (top >> i) & 1:
            out ^= _BECH32_GEN[i]
    return out


# The XOR of the generator terms for each 5-bit top value: one lookup per symbol.
_BECH32_TABLE = tuple(_gen_xor(top) for top in range(32))


def _bech32_polymod(values: list[int]) -> int:
    table = _BECH32_TABLE
    chk = 1
    for v in values:
        chk = ((chk & 0x1FFFFFF) << 5 ^ v) ^ table[chk >> 25]
    return chk


def bech32_ok(text: str) -> bool:
    """Bitcoin segwit addresses (``bc1…``): the BIP-173/BIP-350 checksum."""
    text = text.lower()
    hrp, sep, data = text.rpartition("1")
    if not sep or hrp != "bc" or len(data) < 6:
        return False
    try:
        values = [_BECH32.index(ch) for ch in data]
    except ValueError:
        return False
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    return _bech32_polymod(expanded + values) in _BECH32_CONSTS


def ipv4_ok(text: str) -> bool:
    """Four dotted octets 0-255 (leading zeros rejected: ``01.02.03.04`` is not an address)."""
    parts = text.split(".")
    return len(parts) == 4 and all(
        p.isdigit() and int(p) <= 255 and (p == "0" or not p.startswith("0")) for p in parts
    )


def ipv6_ok(text: str) -> bool:
    """A real IPv6 address in any text form (``::1``, ``::ffff:1.2.3.4``, ``fe80::1%eth0``) with a
    digit in it; ``::`` alone and all-letter look-alikes (``dead::beef``) are not counted."""
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    if text.strip(":") == "":
        return False  # "::" alone is code syntax far more often than an address
    return any(ch.isdigit() for ch in text.partition("%")[0])
