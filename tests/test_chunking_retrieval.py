"""Page-aware chunks and BM25 retrieval (fake token counter: one token per word)."""

from tasks.chunking import chunk_document
from tasks.documents import Document, Page
from tasks.retrieval import rank, select, terms
from tests.fakes import FakeEngine

COUNTER = FakeEngine()


def test_chunks_respect_the_token_limit_and_know_their_pages():
    pages = tuple(
        Page(n, f"Paragraph one of page {n} has some words.\n\nParagraph two of page {n}.") for n in (1, 2, 3)
    )
    chunks = chunk_document(Document("d.txt", pages), COUNTER, max_tokens=30)
    assert all(chunk.tokens <= 30 for chunk in chunks)
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    assert chunks[0].pages[0] == 1 and chunks[-1].pages[-1] == 3
    spanning = [chunk for chunk in chunks if len(chunk.pages) > 1]
    assert spanning and spanning[0].page_label == f"pages {spanning[0].pages[0]}-{spanning[0].pages[-1]}"
    assert " ".join(" ".join(c.text.split()) for c in chunks) == " ".join(" ".join(p.text.split()) for p in pages)


class CharCounter(FakeEngine):
    """One token per four characters, like a tokenizer on text without spaces."""

    def count_tokens(self, text: str) -> int:
        return -(-len(text) // 4)


def test_long_paragraphs_and_unspaced_text_are_split():
    sentence = "This sentence has exactly eight words in it. "
    chinese = "该报告描述了公司的收入以及下一个财政年度的计划" * 10
    chunks = chunk_document(Document("d.txt", (Page(1, sentence * 30),)), COUNTER, max_tokens=25)
    assert len(chunks) > 5 and all(chunk.tokens <= 25 for chunk in chunks)
    pieces = chunk_document(Document("z.txt", (Page(1, chinese),)), CharCounter(), max_tokens=25)
    assert len(pieces) > 2 and all(piece.tokens <= 25 for piece in pieces)
    assert "".join(piece.text.replace("\n\n", "") for piece in pieces) == chinese


def test_terms_cover_words_and_cjk_pairs():
    assert terms("The Berlin office, 2024!") == ["the", "berlin", "office", "2024"]
    assert terms("会社の売上") == ["会社", "社の", "の売", "売上"]


def test_rank_finds_the_matching_chunk_in_any_script():
    pages = (
        Page(1, "Revenue grew in Berlin."),
        Page(2, "会社の売上は増加した。"),
        Page(3, "Die Sitzung war am Montag."),
    )
    chunks = chunk_document(Document("d.txt", pages), COUNTER, max_tokens=4)
    assert rank(chunks, "売上")[0].chunk.pages == (2,)
    assert rank(chunks, "Montag Sitzung")[0].chunk.pages == (3,)


def test_select_fits_the_budget_and_keeps_document_order():
    pages = tuple(
        Page(n, f"Page {n} talks about {'apples' if n % 3 == 0 else 'pears'} and more.") for n in range(1, 13)
    )
    chunks = chunk_document(Document("d.txt", pages), COUNTER, max_tokens=8)
    chosen = select(chunks, "apples", token_budget=20)
    assert sum(s.chunk.tokens for s in chosen) <= 20
    assert all("apples" in s.chunk.text for s in chosen)
    assert [s.chunk.index for s in chosen] == sorted(s.chunk.index for s in chosen)


def test_select_without_any_match_falls_back_to_the_beginning():
    chunks = chunk_document(Document("d.txt", tuple(Page(n, f"Page {n} text.") for n in range(1, 6))), COUNTER, 4)
    chosen = select(chunks, "zebra", token_budget=8)
    assert [s.chunk.pages for s in chosen] == [(1,), (2,)]
