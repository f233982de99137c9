"""Text normalization, on strings and on real generated PDF, DOCX and HTML files."""

import docx

from tasks.cleaning import clean_pages, drop_running_lines, normalize_characters, rejoin_hyphenated
from tasks.documents import load_document


def test_ligatures_become_letters():
    assert normalize_characters("The ﬁrst ﬂoor, eﬀort, oﬃce, baﬄe") == "The first floor, effort, office, baffle"


def test_spacing_accents_join_their_letter():
    assert normalize_characters("Gr¨oße, caf´e, na¨ıve, ˆetre, ˇcesky, ¸ca") == "Größe, café, naïve, être, česky, ça"


def test_acute_used_as_an_apostrophe_is_left_alone():
    assert normalize_characters("it´s John´s") == "it´s John´s"


def test_hyphenated_line_breaks_are_rejoined():
    assert rejoin_hyphenated("inter-\nnational trade") == "international\ntrade"
    assert rejoin_hyphenated("a well-\nknown fact", {"well-known"}) == "a well-known\nfact"
    assert rejoin_hyphenated("Jean-\nPaul") == "Jean-\nPaul"  # a capital after the break: a real hyphen


def test_running_headers_footers_and_page_numbers_go():
    pages = [
        f"ACME Annual Report 2024\nChapter {n} text.\nMore about item {n * 3}.\nPage {n} of 4" for n in range(1, 5)
    ]
    cleaned = drop_running_lines(pages)
    assert cleaned[0] == "Chapter 1 text.\nMore about item 3."
    assert all("ACME" not in page and "Page" not in page for page in cleaned)


def test_pdf_text_is_normalized_end_to_end(pdfs):
    pages = [
        "The ﬁrst section: Gr¨oße matters. An inter-\nnational team wrote it.",
        "Second section about the caf´e.\nIt has several lines.\nThe last one.",
        "Third section.\nNothing special.\nThe end.",
    ]
    document = load_document(pdfs.make("clean.pdf", pages, running_header="ACME Corporation Confidential"))
    text = " ".join(document.text.split())
    assert "first section" in text and "Größe" in text and "international team" in text and "café" in text
    assert "ACME Corporation Confidential" not in text
    assert "Page 2 of 3" not in text


def test_docx_pages_follow_page_breaks(tmp_path):
    word = docx.Document()
    word.add_heading("Quarterly memo", level=1)
    word.add_paragraph("Revenue grew to 4.2 million euros.")
    word.add_page_break()
    word.add_paragraph("Second page: the Berlin office opened.")
    table = word.add_table(rows=2, cols=2)
    for (row, col), value in {(0, 0): "Item", (0, 1): "Cost", (1, 0): "Rent", (1, 1): "1,200"}.items():
        table.cell(row, col).text = value
    word.save(tmp_path / "memo.docx")
    document = load_document(tmp_path / "memo.docx")
    assert len(document.pages) == 2
    assert "Quarterly memo" in document.pages[0].text and "4.2 million" in document.pages[0].text
    assert "Berlin office" in document.pages[1].text and "Rent | 1,200" in document.pages[1].text
    assert document.meta["format"] == "docx" and document.language == "en"


def test_html_keeps_text_and_drops_scripts(tmp_path):
    (tmp_path / "page.html").write_text(
        "<html><head><title>T</title><style>p{color:red}</style></head><body>"
        "<h1>Rapport annuel</h1><script>alert('x')</script>"
        "<p>Le chiffre d'affaires a atteint 4,2 millions d'euros.</p><p>La réunion a eu lieu lundi.</p>"
        "<table><tr><td>Loyer</td><td>1 200</td></tr></table></body></html>",
        encoding="utf-8",
    )
    document = load_document(tmp_path / "page.html")
    text = document.text
    assert "Rapport annuel" in text and "4,2 millions" in text and "Loyer | 1 200" in text
    assert "alert" not in text and "color" not in text
    assert document.language == "fr"


def test_numbers_alone_on_a_line_are_kept_unless_they_count_the_pages():
    assert clean_pages(["Invoice 17\nTotal amount due in EUR:\n4200"], from_pdf=True) == [
        "Invoice 17\nTotal amount due in EUR:\n4200"
    ]
    pages = [f"Chapter text {n}.\nMore words here.\nEven more words.\n{n * 250}" for n in range(1, 6)]
    assert all(page.endswith(str(n * 250)) for n, page in zip(range(1, 6), drop_running_lines(pages), strict=True))
    numbered = [f"Text of page {n}.\nMore words here.\nEven more words.\n{n + 10}" for n in range(1, 6)]
    assert all(not page[-1].isdigit() for page in drop_running_lines(numbered))


def test_docx_hard_break_and_its_rendered_twin_make_one_break(tmp_path):
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    word = docx.Document()
    word.add_paragraph("Page one text.")
    word.add_page_break()
    word.add_paragraph("Page two text.")
    run = word.element.body.findall(qn("w:p"))[-1].find(qn("w:r"))  # its one run, in the public XML tree
    run.insert(0, OxmlElement("w:lastRenderedPageBreak"))  # the break Word records where it laid out a page
    word.save(tmp_path / "twin.docx")
    document = load_document(tmp_path / "twin.docx")
    assert [(p.number, p.text) for p in document.pages] == [(1, "Page one text."), (2, "Page two text.")]


def test_substitute_is_re_sub_joined_as_it_goes():
    import random
    import re

    from tasks.cleaning import substitute

    rng = random.Random(3)
    pattern = re.compile(r"(\w+)-\n(\w)")
    for _ in range(30):
        text = "".join(rng.choice(["ab", "-\n", "c", " ", "\n", "-"]) for _ in range(rng.randint(0, 20_000)))
        assert substitute(pattern, lambda m: m.group(1) + m.group(2), text) == pattern.sub(r"\1\2", text)


def test_hyphen_breaks_keep_the_hyphen_of_compounds_written_whole_elsewhere():
    pages = ["The well-known firm and a state-of-the-art plant.", "A well-\nknown name, an inter-\nnational deal."]
    assert clean_pages(pages, from_pdf=False)[1] == "A well-known\nname, an international\ndeal."


def test_running_lines_go_whatever_the_length_of_a_page():
    bodies = ["\n".join(f"{word} {n}" for n in range(30_000)) for word in ("alpha", "beta", "gamma", "delta")]
    pages = [f"ACME Annual Report\n{body}\nConfidential - page {n}" for n, body in enumerate(bodies, start=1)]
    assert drop_running_lines(pages) == bodies
    assert drop_running_lines(["short", "x\ny", "a\nb\nc"]) == ["short", "x\ny", "a\nb\nc"]
