"""Model configurations we know by name, and the built-in `tiny-random` checkpoint.

`tiny-random` is the real GraniteMoE architecture (the same config keys as
Granite-3.1-1B-A400M-Base) at toy sizes, with random weights and a byte-level BPE tokenizer trained
here on a small multilingual text. It is built deterministically on first use into a cache folder,
so the demo and the tests run offline through exactly the loader path a real checkpoint takes.
Its outputs are meaningless text.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from model.checkfiles import DamagedFile, check_model_files

logger = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "ibm-granite/granite-3.1-1b-a400m-base"
TINY_RANDOM = "tiny-random"
_TINY_VERSION = "v1"  # bump when the recipe changes, so stale caches are not reused
END_OF_TEXT = "<|end_of_text|>"

# The published config of Granite-3.1-1B-A400M (real sizes; benchmarks build it with random weights).
GRANITE_3_1_1B_A400M: dict = {
    "architectures": ["GraniteMoeForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "attention_multiplier": 0.015625,
    "bos_token_id": 0,
    "embedding_multiplier": 12.0,
    "eos_token_id": 0,
    "hidden_act": "silu",
    "hidden_size": 1024,
    "initializer_range": 0.02,
    "intermediate_size": 512,
    "logits_scaling": 6.0,
    "max_position_embeddings": 131072,
    "num_attention_heads": 16,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 24,
    "num_key_value_heads": 8,
    "num_local_experts": 32,
    "output_router_logits": False,
    "pad_token_id": 0,
    "residual_multiplier": 0.22,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1500000.0,
    "router_aux_loss_coef": 0.0,
    "tie_word_embeddings": True,
    "use_cache": True,
    "vocab_size": 49155,
}

# Toy sizes. Head size stays 64 (the real model's), which some serving engines require. The output
# head is untied: with tied random weights the embedding dominates the residual stream and greedy
# decoding only repeats the last prompt token, which would make equality tests trivially true.
_TINY_SIZES = {
    "tie_word_embeddings": False,
    "hidden_size": 128,
    "intermediate_size": 64,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "num_hidden_layers": 2,
    "num_local_experts": 4,
    "num_experts_per_tok": 2,
    "attention_multiplier": 1 / 64,
}
_TINY_VOCAB_TARGET = 2048


def cache_root() -> Path:
    """Where built checkpoints live: $GRANITE_LONGDOC_CACHE, else ~/.cache/granite-longdoc."""
    configured = os.environ.get("GRANITE_LONGDOC_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "granite-longdoc"


def tiny_random_path(root: Path | None = None) -> Path:
    """Return the tiny-random checkpoint folder, building it first if it is not there yet, or
    again if a file of it is damaged (a full disk or a killed copy can leave a truncated file)."""
    target = (root or cache_root()) / f"tiny-random-{_TINY_VERSION}"
    problem = _problem(target)
    if problem is None:
        return target
    if target.exists():
        logger.warning("building the tiny-random checkpoint again: %s", problem)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-random-", dir=target.parent))
    try:
        build_tiny_random(staging)
        if _problem(target) is not None:  # else another process has built it meanwhile
            _discard(target)
            try:
                staging.rename(target)  # atomic: a half-built folder is never visible
            except OSError:
                if _problem(target) is not None:  # lost a race only if the winner finished
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("built the tiny-random checkpoint in %s", target)
    return target


def _problem(folder: Path) -> str | None:
    """Why `folder` is not a complete checkpoint, or None when it is one."""
    if not (folder / "config.json").exists():
        return f"{folder} has no config.json"
    try:
        check_model_files(folder)
    except DamagedFile as exc:
        return str(exc)
    return None


def _discard(folder: Path) -> None:
    """Move a damaged `folder` out of the way (one rename, so the name is free at once), then delete it."""
    aside = Path(tempfile.mkdtemp(prefix=".tiny-random-damaged-", dir=folder.parent))
    try:
        folder.rename(aside / folder.name)
    except FileNotFoundError:
        pass  # nothing there, or another process already moved it
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def build_tiny_random(folder: Path) -> None:
    """Write a tiny GraniteMoE checkpoint (config, safetensors weights, tokenizer) into `folder`."""
    import torch
    from transformers import GraniteMoeConfig, GraniteMoeForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = _train_tokenizer()
    vocab_size = -(-len(tokenizer) // 64) * 64  # round up, as real checkpoints pad their vocab
    config = GraniteMoeConfig(**{**GRANITE_3_1_1B_A400M, **_TINY_SIZES, "vocab_size": vocab_size})
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        model = GraniteMoeForCausalLM(config).to(torch.float32)
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config.pad_token_id = 0
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def _train_tokenizer():
    """Train a byte-level BPE tokenizer on the built-in multilingual text (deterministic)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_TINY_VOCAB_TARGET,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_TRAINING_TEXT.splitlines(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
        model_max_length=GRANITE_3_1_1B_A400M["max_position_embeddings"],
        clean_up_tokenization_spaces=False,
    )


# A little text in each of the twelve languages the real model supports, plus the words our
# prompt templates use, so the tokenizer has sensible merges for all of them.
_TRAINING_TEXT = """\
Below is a document, followed by a task about it. Summary: Question: Answer: Page Document
The quarterly report describes revenue of 4.2 million dollars, an increase of 12 percent over last year.
The committee met on 3 March 2024 and approved the budget, the hiring plan and the new office in Berlin.
Write a concise summary of the document above. Answer the question using only the document.
If the document does not contain the answer, say that it does not. Names, dates and numbers matter.
Der Bericht beschreibt den Umsatz des Unternehmens und die Pläne für das nächste Geschäftsjahr.
Die Sitzung fand am Montag statt; alle Mitglieder stimmten dem Vorschlag zu. Größe, Straße, Übung.
El informe describe los ingresos de la empresa y los planes para el próximo año fiscal en España.
La reunión se celebró el lunes y todos los miembros aprobaron la propuesta. ¿Qué pasó? ¡Mañana!
Le rapport décrit le chiffre d'affaires de l'entreprise et les projets pour l'année prochaine.
La réunion a eu lieu lundi et tous les membres ont approuvé la proposition. Où est le résumé ?
この文書は会社の売上と来年度の計画について説明しています。会議は月曜日に開催されました。
すべてのメンバーが提案を承認しました。要約を書いてください。質問に答えてください。
O relatório descreve a receita da empresa e os planos para o próximo ano fiscal em São Paulo.
A reunião aconteceu na segunda-feira e todos os membros aprovaram a proposta. Ação, decisão.
يصف التقرير إيرادات الشركة وخططها للسنة المالية القادمة. عقد الاجتماع يوم الاثنين.
وافق جميع الأعضاء على الاقتراح. اكتب ملخصا موجزا للوثيقة. أجب عن السؤال.
Zpráva popisuje příjmy společnosti a plány na příští fiskální rok. Schůze se konala v pondělí.
Všichni členové návrh schválili. Napište stručné shrnutí dokumentu. Odpovězte na otázku.
La relazione descrive i ricavi dell'azienda e i piani per il prossimo anno fiscale in Italia.
La riunione si è svolta lunedì e tutti i membri hanno approvato la proposta. Perché? Città.
보고서는 회사의 매출과 다음 회계 연도 계획을 설명합니다. 회의는 월요일에 열렸습니다.
모든 회원이 제안을 승인했습니다. 문서를 간결하게 요약하십시오. 질문에 답하십시오.
Het rapport beschrijft de omzet van het bedrijf en de plannen voor het volgende boekjaar.
De vergadering vond maandag plaats en alle leden keurden het voorstel goed. Samenvatting.
该报告描述了公司的收入以及下一个财政年度的计划。会议于星期一举行。
所有成员都批准了该提案。请写出文件的简要摘要。请回答问题。
Η έκθεση περιγράφει τα έσοδα της εταιρείας. Отчёт описывает доходы компании и планы.
"""
