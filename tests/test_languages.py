"""Twelve languages: detection, the default output language, and every template rendering and
running on the tiny model."""

import pytest

from tasks.ask import ask
from tasks.classify import classify
from tasks.custom import custom
from tasks.documents import Document, Page
from tasks.extract import extract, spec_from_fields
from tasks.language import LANGUAGES, detect_language
from tasks.options import TaskOptions
from tasks.prompts import TASKS, load_template, template_languages
from tasks.summarize import summarize

SAMPLES = {
    "en": "The annual report describes the revenue of the company and the plans for the next fiscal year.",
    "de": "Der Jahresbericht beschreibt den Umsatz des Unternehmens und die Pläne für das nächste Geschäftsjahr.",
    "es": "El informe anual describe los ingresos de la empresa y los planes para el próximo año fiscal.",
    "fr": "Le rapport annuel décrit le chiffre d'affaires de l'entreprise et les projets pour l'année prochaine.",
    "ja": "年次報告書は、会社の売上と来年度の計画について説明しています。",
    "pt": "O relatório anual descreve a receita da empresa e os planos para o próximo ano fiscal.",
    "ar": "يصف التقرير السنوي إيرادات الشركة وخططها للسنة المالية القادمة.",
    "cs": "Výroční zpráva popisuje příjmy společnosti a plány na příští fiskální rok.",
    "it": "La relazione annuale descrive i ricavi dell'azienda e i piani per il prossimo anno fiscale.",
    "ko": "연례 보고서는 회사의 매출과 다음 회계 연도의 계획을 설명합니다.",
    "nl": "Het jaarverslag beschrijft de omzet van het bedrijf en de plannen voor het volgende boekjaar.",
    "zh": "年度报告介绍了公司的收入以及下一个财政年度的计划。",
}
CUES = {"de": "Zusammenfassung:", "ja": "要約：", "ar": "الملخص:", "zh": "摘要："}


@pytest.mark.parametrize("code", list(LANGUAGES))
def test_each_language_is_detected(code):
    assert detect_language(SAMPLES[code]) == code


def test_every_task_has_a_template_for_every_language():
    for task in TASKS:
        assert set(template_languages(task)) == set(LANGUAGES)


@pytest.mark.parametrize("code", list(LANGUAGES))
def test_templates_render_without_leftover_placeholders(code):
    filled = [
        load_template("summarize", code).fill("instruction"),
        load_template("summarize", code).fill("map_instruction", pages="3-7"),
        load_template("summarize", code).fill("part_label", number=2, pages="3-7"),
        load_template("summarize", code).fill("reduce_intro", name="report.pdf"),
        load_template("summarize", code).fill("reduce_instruction"),
        load_template("ask", code).fill("instruction", question="Q?"),
        load_template("extract", code).fill("instruction", fields="title"),
        load_template("classify", code).fill("instruction", labels="a, b"),
        load_template("custom", code).fill("instruction", prompt="List the plans."),
    ]
    for text in filled:
        assert "{" not in text and "}" not in text and text.strip()


@pytest.mark.parametrize("code", list(LANGUAGES))
def test_every_template_runs_on_the_model(code, tiny_engine):
    document = Document(f"{code}.txt", (Page(1, SAMPLES[code]),), {"language": code})
    options = TaskOptions(max_new_tokens=6)
    results = [
        list(summarize([document], options, tiny_engine))[-1],
        list(ask([document], "What does it describe?", options, tiny_engine))[-1],
        list(extract([document], spec_from_fields("topic"), TaskOptions(max_new_tokens=400), tiny_engine))[-1],
        list(classify([document], "report,letter", options, tiny_engine))[-1],
        list(custom([document], "List the plans.", options, tiny_engine))[-1],
    ]
    assert [r.task for r in results] == ["summarize", "ask", "extract", "classify", "custom"]
    assert all(r.language == code for r in results)


def test_default_output_language_is_the_documents_and_lang_overrides_it(fake_engine):
    german = Document("bericht.txt", (Page(1, SAMPLES["de"]),), {"language": "de"})
    assert list(summarize([german], TaskOptions(), fake_engine))[-1].language == "de"
    assert fake_engine.prompts[-1].rstrip().endswith(CUES["de"])
    assert list(summarize([german], TaskOptions(language="ja"), fake_engine))[-1].language == "ja"
    assert fake_engine.prompts[-1].rstrip().endswith(CUES["ja"])


def test_fields_and_labels_are_split_at_every_languages_comma():
    from tasks.options import comma_list

    assert comma_list("請求書、契約書，報告書، invoice, invoice") == ["請求書", "契約書", "報告書", "invoice"]
