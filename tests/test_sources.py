"""Sources: discovery, decoding, metadata, and files that must be skipped with a reason."""

from __future__ import annotations

import pytest

from rag import sources
from tests.conftest import SEEDS


def test_seed_metadata():
    nl = sources.load(SEEDS, "000_51d920bc302d2553.txt")
    en = sources.load(SEEDS, "002_89be491c9f5e8b09.txt")
    assert (nl.language, nl.date) == ("nl", "2026-01-28")
    assert nl.title.startswith("SoftBank overweegt een nieuwe investering in OpenAI")
    assert (en.language, en.date) == ("en", "")
    assert en.title.startswith("Masayoshi Son is going all-in")


@pytest.mark.parametrize("question,lang", [
    ("Hoeveel wil SoftBank in OpenAI investeren?", "nl"),
    ("How much does SoftBank want to invest in OpenAI?", "en"),
    ("Wat is de looptijd van de lening?", "nl"),
    ("What is the term of the loan?", "en"),
])
def test_language_of_questions(question, lang):
    assert sources.detect_language(question) == lang


def test_latin1_is_decoded_not_dropped(tmp_path):
    (tmp_path / "a.txt").write_bytes("Café De Zwaan, één ruïne.".encode("latin-1"))
    files, skipped = sources.scan(tmp_path, 10**6)
    assert not skipped
    article = sources.load(tmp_path, files[0].source, files[0].data)
    assert "Café" in article.text and "één" in article.text


def test_bad_files_are_skipped_with_reasons(tmp_path):
    (tmp_path / "good.md").write_text("# Kop\n\nEen goed artikel over banken.")
    (tmp_path / "empty.txt").write_text("   \n")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02" * 100)
    (tmp_path / "big.txt").write_text("x" * 2000)
    (tmp_path / "ignored.pdf").write_bytes(b"%PDF")
    (tmp_path / "loop.txt").symlink_to(tmp_path / "loop.txt")
    outside = tmp_path.parent / "outside-secret.txt"
    outside.write_text("secret")
    (tmp_path / "escape.txt").symlink_to(outside)
    files, skipped = sources.scan(tmp_path, 1000)
    reasons = {s["path"]: s["reason"] for s in skipped}
    assert "too large" in reasons["big.txt"]
    assert "outside" in reasons["escape.txt"]
    assert "unreadable" in reasons["loop.txt"]
    names = {f.source for f in files}
    assert names == {"good.md", "empty.txt", "binary.txt"}
    for name, why in (("empty.txt", "empty"), ("binary.txt", "binary")):
        entry = next(f for f in files if f.source == name)
        with pytest.raises(ValueError, match=why):
            sources.load(tmp_path, name, entry.data)
    good = sources.load(tmp_path, "good.md")
    assert good.title == "Kop"


def test_a_plain_text_headline_is_the_title_and_a_first_sentence_is_no_headline(tmp_path):
    (tmp_path / "kop.txt").write_text("date 2026-01-12\nStorm sluit haven van Rotterdam\n\n"
                                      "De haven is dicht. Schepen wachten.")
    (tmp_path / "lede.txt").write_text("De haven is dicht.\n\nSchepen wachten op zee.")
    (tmp_path / "long.txt").write_text("De haven van Rotterdam is twee dagen dicht " * 5 + "\n\nSchepen wachten.")
    kop, lede, long = (sources.load(tmp_path, f"{name}.txt").title for name in ("kop", "lede", "long"))
    assert kop == sources.headline(kop) == "Storm sluit haven van Rotterdam"
    assert lede == "De haven is dicht." and sources.headline(lede) == ""
    assert long.endswith("...") and sources.headline(long) == ""
    # a headline is a headline up to the length of any title (it once lent nothing past 120 characters)
    (tmp_path / "kop140.txt").write_text("Storm sluit haven van Rotterdam " * 4 + "voor twee dagen\n\nDe haven dicht.")
    kop140 = sources.load(tmp_path, "kop140.txt").title
    assert len(kop140) > 140 and sources.headline(kop140) == kop140
    assert sources.is_lead("De haven is dicht.", lede) and not sources.is_lead("Schepen wachten op zee.", lede)
    assert sources.is_lead("De haven van Rotterdam is twee dagen dicht " * 5, long)


def test_path_outside_the_folder_is_refused(tmp_path):
    with pytest.raises(sources.SourceError):
        sources.read_text(tmp_path, "../etc/passwd")


def test_missing_folder(tmp_path):
    with pytest.raises(sources.SourceError, match="not found"):
        sources.scan(tmp_path / "nope", 10)


def test_html_offsets_and_title(tmp_path):
    html = ("<html><head><title>Bank &amp; Co</title></head><body><p>De bank leent geld.</p>"
            "<script>alert(1)</script></body></html>")
    (tmp_path / "a.html").write_text(html)
    article = sources.load(tmp_path, "a.html")
    assert article.title == "Bank & Co"
    assert "alert" not in sources.plain(article.text, "html")
