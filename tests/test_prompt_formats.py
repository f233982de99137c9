"""Chat templates for instruct models, completion prompts for base models (tasks/prompts.py,
model/tokens.py), and retrieval that keeps the few passages that matter (tasks/retrieval.py)."""

from __future__ import annotations

import copy
from string import Formatter

import pytest

from model.tokens import chat_frame
from tasks.chunking import Chunk
from tasks.documents import Document, Page
from tasks.options import TaskOptions
from tasks.prompts import TASKS, engine_template, in_chat_frame, load_template, template_languages
from tasks.retrieval import rank, select
from tests.fakes import FakeEngine

FRAME = ("<|user|>\n", "<|end|>\n<|assistant|>\n")
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_tokenizer_without_chat_template_gets_completion_prompts(tiny_loaded):
    assert chat_frame(tiny_loaded.tokenizer) is None


def test_a_chat_template_frames_one_user_message(tiny_loaded):
    tokenizer = copy.deepcopy(tiny_loaded.tokenizer)
    tokenizer.chat_template = CHATML
    assert chat_frame(tokenizer) == ("<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n")
    tokenizer.chat_template = "{{ raise_exception('system message required') }}"
    assert chat_frame(tokenizer) is None


def test_the_documents_stay_the_cacheable_prefix_inside_the_frame():
    assert in_chat_frame(FRAME, "DOCS\n", "\nWhere?") == ("<|user|>\nDOCS\n", "\nWhere?" + FRAME[1])
    assert in_chat_frame(None, "DOCS\n", "\nAnswer:") == ("DOCS\n", "\nAnswer:")
    assert in_chat_frame(FRAME, "", "EXCERPTS\nSum up.") == ("", "<|user|>\nEXCERPTS\nSum up." + FRAME[1])


@pytest.mark.parametrize("task", TASKS)
def test_no_chat_part_ends_in_an_answer_cue(task):
    for language in template_languages(task):
        for text in load_template(task, language, chat=True).parts.values():
            assert not text.rstrip().endswith((":", "：")), (task, language, text[-30:])


@pytest.mark.parametrize("task", TASKS)
def test_chat_parts_ask_for_the_same_fields_in_every_language(task):
    for language in template_languages(task):
        completion, chat = load_template(task, language), load_template(task, language, chat=True)
        assert completion.parts.keys() == chat.parts.keys() and completion.stop == chat.stop
        for name, text in chat.parts.items():
            fields = {field for _, field, _, _ in Formatter().parse(text) if field}
            assert fields == {field for _, field, _, _ in Formatter().parse(completion.parts[name]) if field}
            assert "chat_" not in name


def test_an_instruct_model_reads_the_short_chat_request_in_its_frame():
    from tasks.ask import ask

    engine = FakeEngine(reply="In Tallinn.", chat_frame=FRAME)
    document = Document("report.txt", (Page(1, "Norvale Instruments is based in Tallinn."),))
    result = list(ask([document], "Where is Norvale based?", TaskOptions(max_new_tokens=16), engine))[-1]
    prompt = engine.prompts[-1]
    assert prompt.startswith(FRAME[0] + "===== DOCUMENT: report.txt") and prompt.endswith(FRAME[1])
    assert "Answer from the document above: Where is Norvale based?" in prompt
    assert "Answer:" not in prompt and result.text == "In Tallinn."
    assert engine_template("ask", "en", FakeEngine()).parts["instruction"].rstrip().endswith("Answer:")


def _chunks(texts: list[str]) -> list[Chunk]:
    return [Chunk("doc.txt", i, (i + 1,), text, len(text.split())) for i, text in enumerate(texts)]


def test_stop_words_and_words_in_most_passages_select_nothing():
    chunks = _chunks([f"Norvale report page {i}: the weather was fine and the harbour quiet." for i in range(6)])
    chunks.append(Chunk("doc.txt", 6, (7,), "Norvale report: the anchor weighed 2,750 kilograms.", 8))
    ranked = rank(chunks, "What is the weight of the anchor in the Norvale report?")
    assert ranked[0].chunk.index == 6 and ranked[1].score == 0  # "the", "Norvale", "report" tell nothing
    assert [s.chunk.index for s in select(chunks, "Where was the anchor?", 1000)] == [6]


def test_select_keeps_the_best_few_that_score_near_the_best():
    chunks = _chunks([f"beacon {'failed ' * (i % 4 == 1)}log entry number {i}" for i in range(12)])
    chosen = select(chunks, "when the beacon failed", 10_000, top_k=2)
    assert len(chosen) == 2 and all("failed" in s.chunk.text for s in chosen)
    assert [s.chunk.index for s in chosen] == sorted(s.chunk.index for s in chosen)


def test_only_the_documents_language_has_stop_words():
    chunks = _chunks([f"The harbour log of day {i}: calm weather and quiet water." for i in range(12)])
    chunks[8] = Chunk("doc.txt", 8, (9,), "The war with the rival firm ended in 1998.", 9)
    assert [s.chunk.index for s in select(chunks, "When did the war end?", 800, language="en")] == [8]
    assert select(chunks, "Wann war das?", 800, language="de")[0].chunk.index == 0  # German "war": was


def test_a_query_whose_every_word_is_common_still_ranks_by_them():
    chunks = _chunks([f"budget line {i}" + (" budget budget budget" if i == 7 else "") for i in range(10)])
    assert select(chunks, "budget", 800, top_k=1)[0].chunk.index == 7
