"""The transformer preference predictor and the tiny-model factory, on a tiny GPT-2 built here.

The toy task is learnable by a 2-layer model in a few dozen steps: each response is one word
repeated ("yes yes yes" is good, "no no" is bad); the pair with one of each is won by the "yes"
side, and two of a kind tie.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone

from crowdtune.preference.base import swap_frame
from crowdtune.preference.transformer import (
    TEMPLATE_HEADERS,
    TransformerPreferenceModel,
    encode_pairs,
)
from crowdtune.training import load_model, tiny_tokenizer
from crowdtune.training.lora import allocate_lengths

# One worker runs the whole module, so the trained model (a module fixture) is built once.
pytestmark = pytest.mark.xdist_group("preference_transformer")

UNIFORM_LOG_LOSS = math.log(3)
#: Settings under which the toy task is learnt reliably (checked over seeds 0-4: held-out log
#: loss 0.65-0.87 after 40 steps; 60 steps leave a margin).
TOY_SETTINGS = {"max_steps": 60, "learning_rate": 3e-3, "batch_size": 8, "max_length": 64}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny matrices gain nothing from threads, and two OpenMP threads per pytest worker on a
    2-core machine spin against each other (a 20-40x slowdown measured here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def toy_pairs(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for i in range(n):
        label = int(rng.integers(3))
        good_a = {0: True, 1: False, 2: bool(rng.integers(2))}[label]
        good_b = {0: False, 1: True, 2: good_a}[label]
        a = " ".join(["yes" if good_a else "no"] * int(rng.integers(3, 7)))
        b = " ".join(["yes" if good_b else "no"] * int(rng.integers(3, 7)))
        rows.append((f"toy-{seed}-{i}", "Which is better?", a, b, label))
        labels.append(label)
    frame = pd.DataFrame(rows, columns=["id", "prompt", "response_a", "response_b", "label"])
    return frame, np.asarray(labels)


def log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels])))


@pytest.fixture(scope="module")
def fitted() -> tuple[TransformerPreferenceModel, pd.DataFrame, np.ndarray]:
    before = torch.get_num_threads()  # module fixtures are set up before one_torch_thread
    torch.set_num_threads(1)
    X, y = toy_pairs(128, seed=1)
    model = TransformerPreferenceModel(**TOY_SETTINGS, random_state=0).fit(X, y)
    torch.set_num_threads(before)
    return model, *toy_pairs(60, seed=2)


# ------------------------------------------------------------------------------ model factory


def test_tiny_tokenizer_round_trips_text_and_has_a_training_chat_template():
    tokenizer = tiny_tokenizer()
    text = "Ünïcode, code `x = 1` and emoji 🙂 survive"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert "{% generation %}" in tokenizer.chat_template
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    rendered = tokenizer.apply_chat_template(chat, tokenize=False)
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n"


def test_load_model_tiny_is_seeded_and_sets_pad_token():
    first, tokenizer = load_model("tiny", "sequence-classification", num_labels=3, seed=5)
    second, _ = load_model("tiny", "sequence-classification", num_labels=3, seed=5)
    other, _ = load_model("tiny", "sequence-classification", num_labels=3, seed=6)
    assert first.config.pad_token_id == tokenizer.pad_token_id is not None
    assert first.config.num_labels == 3
    weight = "transformer.h.0.attn.c_attn.weight"
    assert torch.equal(first.state_dict()[weight], second.state_dict()[weight])
    assert not torch.equal(first.state_dict()[weight], other.state_dict()[weight])
    causal, _ = load_model("tiny", n_layer=1)
    assert causal.config.n_layer == 1 and causal.get_output_embeddings() is not None


def test_load_model_rejects_bad_arguments_clearly():
    with pytest.raises(ValueError, match="task must be one of"):
        load_model("tiny", "translation")
    with pytest.raises(ValueError, match="num_labels only applies"):
        load_model("tiny", "causal-lm", num_labels=3)
    with pytest.raises(ValueError, match="Built-in models: 'tiny'"):
        load_model("no such model")


# --------------------------------------------------------------------------------- encoding


def test_allocate_lengths_is_fair_and_order_free():
    assert allocate_lengths([10, 500, 40], 100) == [10, 50, 40]
    assert allocate_lengths([50, 50, 50], 100) == [33, 33, 33]
    assert allocate_lengths([7, 8, 9], 24) == [7, 8, 9]
    # The same lengths in another order get the same cuts (so a pair and its swap match).
    assert allocate_lengths([5, 300, 200], 100) == [5, 47, 47]
    assert allocate_lengths([5, 200, 300], 100) == [5, 47, 47]


def test_truncation_keeps_all_three_parts_of_a_long_pair():
    tokenizer = tiny_tokenizer()
    X = pd.DataFrame(
        {
            "prompt": ["PROMPTSTART " + "question words " * 200],
            "response_a": ["ASTART " + "alpha words " * 400],
            "response_b": ["BSTART " + "beta words " * 300],
        }
    )
    a_first, b_first = encode_pairs(tokenizer, X, max_length=128)
    assert len(a_first[0]) <= 128 and len(b_first[0]) <= 128
    text = tokenizer.decode(a_first[0])
    for marker in ("PROMPTSTART", "ASTART", "BSTART", *TEMPLATE_HEADERS):
        assert marker in text
    assert text.index("ASTART") < text.index("BSTART")
    assert text.endswith(TEMPLATE_HEADERS[-1])
    swapped = tokenizer.decode(b_first[0])
    assert swapped.index("BSTART") < swapped.index("ASTART")
    # The swap shows exactly the same tokens of each part.
    assert sorted(a_first[0]) == sorted(b_first[0])


def test_short_pairs_are_not_cut_and_special_token_strings_stay_text():
    tokenizer = tiny_tokenizer()
    X = pd.DataFrame({"prompt": ["hi"], "response_a": ["<|pad|> a"], "response_b": ["b"]})
    a_first, _ = encode_pairs(tokenizer, X, max_length=1024)
    assert tokenizer.pad_token_id not in a_first[0]
    assert tokenizer.decode(a_first[0]) == (
        "### Prompt:\nhi\n\n### Response A:\n<|pad|> a\n\n### Response B:\nb"
        "\n\n### Which response is better?"
    )
    with pytest.raises(ValueError, match="max_length=8 leaves no room"):
        encode_pairs(tokenizer, X, max_length=8)


# ------------------------------------------------------------------------------- estimator


@pytest.mark.slow
def test_training_lowers_the_loss_and_beats_uniform_on_held_out_pairs(fitted):
    model, X_test, y_test = fitted
    history = np.asarray(model.loss_history_)
    assert len(history) == TOY_SETTINGS["max_steps"]
    assert np.isfinite(history).all()
    assert history[-10:].mean() < history[:5].mean() - 0.2
    held_out = log_loss(model.predict_proba(X_test), y_test)
    assert held_out < UNIFORM_LOG_LOSS - 0.1, held_out


@pytest.mark.slow
def test_predictions_are_exactly_swap_symmetric_and_sum_to_one(fitted):
    model, X_test, _ = fitted
    probabilities = model.predict_proba(X_test)
    assert probabilities.shape == (len(X_test), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    swapped = model.predict_proba(swap_frame(X_test))
    np.testing.assert_allclose(swapped, probabilities[:, [1, 0, 2]], atol=1e-6, rtol=0)
    np.testing.assert_array_equal(model.predict(X_test), probabilities.argmax(axis=1))
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    # Batching does not change a row's prediction.
    one_by_one = np.vstack([model.predict_proba(X_test.iloc[[i]]) for i in range(5)])
    np.testing.assert_allclose(one_by_one, probabilities[:5], atol=1e-5)


@pytest.mark.slow
def test_save_and_load_give_the_same_predictions(fitted, tmp_path):
    model, X_test, _ = fitted
    model.save(tmp_path / "pref")
    assert (tmp_path / "pref" / "params.json").is_file()
    loaded = TransformerPreferenceModel.load(tmp_path / "pref", device="cpu")
    assert loaded.get_params() == {**model.get_params(), "device": "cpu"}
    assert loaded.loss_history_ == model.loss_history_
    np.testing.assert_allclose(
        loaded.predict_proba(X_test), model.predict_proba(X_test), atol=1e-6, rtol=0
    )


@pytest.mark.slow
def test_a_model_saved_when_the_seed_was_named_seed_still_loads(fitted, tmp_path):
    model, X_test, _ = fitted
    model.save(tmp_path / "pref")
    manifest_path = tmp_path / "pref" / "params.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["params"]["seed"] = manifest["params"].pop("random_state")
    manifest_path.write_text(json.dumps(manifest))
    loaded = TransformerPreferenceModel.load(tmp_path / "pref", device="cpu")
    assert loaded.get_params() == {**model.get_params(), "device": "cpu"}
    np.testing.assert_allclose(
        loaded.predict_proba(X_test), model.predict_proba(X_test), atol=1e-6, rtol=0
    )


def test_load_names_a_directory_that_is_not_a_saved_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="params.json"):
        TransformerPreferenceModel.load(tmp_path)


def test_fit_is_reproducible_from_the_seed_and_leaves_global_rng_alone():
    X, y = toy_pairs(16, seed=3)
    settings = {"max_steps": 3, "batch_size": 4, "max_length": 64, "learning_rate": 1e-3}
    torch.manual_seed(123)
    expected_draw = torch.rand(1)
    torch.manual_seed(123)
    first = TransformerPreferenceModel(**settings, random_state=7).fit(X, y)
    assert torch.equal(torch.rand(1), expected_draw)
    second = TransformerPreferenceModel(**settings, random_state=7).fit(X, y)
    assert first.loss_history_ == second.loss_history_
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))


def test_gradient_accumulation_and_epochs_set_the_number_of_steps():
    X, y = toy_pairs(10, seed=4)  # 20 texts in both orders: 5 batches of 4, 3 steps of 2
    model = TransformerPreferenceModel(
        epochs=2, batch_size=4, gradient_accumulation=2, max_length=64, lora_r=4
    ).fit(X, y)
    assert len(model.loss_history_) == 6


def test_clone_and_params_follow_scikit_learn():
    model = TransformerPreferenceModel(lora_r=8, max_steps=5, target_modules=["c_attn"])
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    copy.set_params(lora_r=4, bf16=False)
    assert (copy.lora_r, copy.bf16, model.lora_r) == (4, False, 8)
    assert not hasattr(copy, "model_")


def test_bad_input_and_params_fail_clearly():
    X, y = toy_pairs(4, seed=5)
    with pytest.raises(ValueError, match="lacks column"):
        TransformerPreferenceModel().fit(X.drop(columns="response_b"), y)
    with pytest.raises(ValueError, match="labels must be"):
        TransformerPreferenceModel().fit(X, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="lora_r must be a positive integer"):
        TransformerPreferenceModel(lora_r=0).fit(X, y)
    with pytest.raises(ValueError, match="bf16 must be"):
        TransformerPreferenceModel(bf16="yes").fit(X, y)
    with pytest.raises(Exception, match="not fitted"):
        TransformerPreferenceModel().predict_proba(X)


@pytest.mark.slow
def test_a_checkpoint_directory_trains_saves_and_loads_by_path(tmp_path):
    # What a user with a real model does (model="path/or/hub-name"), with a tiny checkpoint.
    causal, tokenizer = load_model("tiny", "causal-lm", seed=2)
    causal.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    X, y = toy_pairs(16, seed=6)
    model = TransformerPreferenceModel(
        model=str(tmp_path / "base"), max_steps=4, batch_size=4, max_length=64, verbose=True
    ).fit(X, y)
    model.save(tmp_path / "pref")
    assert not (tmp_path / "pref" / "base").exists()  # the base is read again from its path
    loaded = TransformerPreferenceModel.load(tmp_path / "pref")
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), atol=1e-6, rtol=0)


def test_a_tokenizer_that_adds_bos_keeps_it_first_and_within_max_length():
    # Gemma and Llama tokenizers put <bos> before every text; it must stay first, once.
    from tokenizers import processors

    tokenizer = tiny_tokenizer()
    bos = tokenizer.bos_token_id
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", bos)]
    )
    assert tokenizer("x")["input_ids"][0] == bos
    X = pd.DataFrame({"prompt": ["p " * 300], "response_a": ["a " * 300], "response_b": ["b"]})
    a_first, b_first = encode_pairs(tokenizer, X, max_length=100)
    for ids in (a_first[0], b_first[0]):
        assert len(ids) <= 100 and ids[0] == bos and ids.count(bos) == 1


def test_gradient_checkpointing_trains():
    X, y = toy_pairs(8, seed=7)
    model = TransformerPreferenceModel(
        max_steps=2, batch_size=4, max_length=64, gradient_checkpointing=True
    ).fit(X, y)
    assert np.isfinite(model.loss_history_).all()
    assert model.predict_proba(X).shape == (8, 3)
