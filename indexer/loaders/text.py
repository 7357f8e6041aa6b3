"""Plain text: UTF-8, UTF-16 with a BOM, or a legacy encoding detected; never mojibake."""

from __future__ import annotations

from indexer.errors import LoaderError


def _looks_binary(data: bytes) -> bool:
    sample = data[:65536]
    if b"\x00" in sample:
        return True
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13))
    return controls > len(sample) * 0.05


def _is_cyrillic(c: str) -> bool:
    return "\u0400" <= c <= "\u04ff"


# Letter frequencies of Russian text (per mille), to tell cp1251 from KOI8-R: each reads the other's
# bytes as other letters, most of them rare.
_RUSSIAN_FREQ = dict(
    zip(
        "оеаинтсрвлкмдпуяыьгзбчйхжшюцщэфъё",
        (
            110,
            85,
            80,
            74,
            67,
            63,
            55,
            47,
            45,
            44,
            35,
            32,
            30,
            28,
            26,
            20,
            19,
            17,
            17,
            16,
            16,
            14,
            12,
            10,
            9,
            7,
            6,
            5,
            4,
            3,
            2,
            1,
            1,
        ),
        strict=True,
    )
)


def _cyrillic_encoding(data: bytes) -> str | None:
    """cp1251 or KOI8-R when the bytes read as Russian text in one of them, else None.

    Statistical detectors misread short Russian texts (a five-letter word comes out as Urdu or
    Big5); our users' most common legacy files are Russian, so these two are tried first. Russian
    reads as words of Cyrillic letters; a Western text read as cp1251 gives lone Cyrillic letters
    inside Latin words ("cafй"). Between the two, the reading with the more Russian letter
    frequencies and the more lower case wins (each reads the other's lower case as upper case).
    """
    best, best_score = None, 0.0
    for encoding in ("cp1251", "koi8_r"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        high = in_words = lower = 0
        freq = 0.0
        for i, c in enumerate(text):
            if ord(c) <= 127:
                continue
            high += 1
            if not _is_cyrillic(c):
                continue
            around = text[max(i - 1, 0) : i] + text[i + 1 : i + 2]
            if any(n.isascii() and n.isalpha() for n in around):
                continue  # a lone letter inside a Latin word
            if any(_is_cyrillic(n) for n in around):
                in_words += 1
                lower += c.islower()
                freq += _RUSSIAN_FREQ.get(c.lower(), 0)
        if not high or in_words / high < 0.6:
            continue
        score = (freq + 30 * lower) / in_words  # running text is mostly lower case
        if score > best_score:
            best, best_score = encoding, score
    return best


def _detected_encoding(data: bytes, name: str) -> str:
    from charset_normalizer import from_bytes

    best = from_bytes(data[: 1 << 20]).best()
    if best is None or best.chaos > 0.3:
        raise LoaderError(f"{name}: not UTF-8 and no text encoding fits; re-save it as UTF-8")
    return best.encoding


def decode_text(data: bytes, name: str) -> tuple[str, str]:
    """Text and the encoding it was read with: UTF-8 (BOM or not), UTF-16 with a BOM, else detected.

    Legacy single-byte encodings (cp1251 Russian, cp1252, ...) are detected with charset-normalizer;
    bytes that look binary, or that no encoding explains, are a clear error, never mojibake.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    else:
        try:
            data.decode("utf-8")
            encoding = "utf-8-sig"
        except UnicodeDecodeError:
            if _looks_binary(data):
                raise LoaderError(f"{name}: this looks like a binary file, not text") from None
            encoding = _cyrillic_encoding(data) or _detected_encoding(data, name)
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as e:
        raise LoaderError(f"{name}: cannot decode as {encoding}: {e}") from e
    if "\x00" in text:
        raise LoaderError(f"{name}: contains NUL characters; this looks like a binary file, not text")
    return text.replace("\r\n", "\n").replace("\r", "\n"), encoding.replace("utf-8-sig", "utf-8")
