"""Concepts: the built-in refusal and Chinese concepts, seeded sampling, concept files and their
bad inputs, the Python API with a function as judge, and the ``cosmic-tl run`` concept flags."""

from __future__ import annotations

import argparse
import json
import textwrap

import pytest

from cosmic_tl.concepts import (
    CHINESE_SUFFIX,
    Concept,
    ConceptError,
    ConceptLabels,
    ConceptSample,
    ModelJudgeSpec,
    add_concept_arguments,
    builtin_concept,
    concept_from_args,
    judge_from_spec,
    load_concept,
    sample_concept,
)
from cosmic_tl.data import PAPER_FINGERPRINTS, Prompt, sample_paper
from cosmic_tl.judges import CJKJudge, JudgeError, ModelJudge, PhraseJudge, RegexJudge, SubstringJudge

PAPER_SPLITS = {
    "pos_train": "harmful_train", "neg_train": "harmless_train", "pos_val": "harmful_val",
    "neg_val": "harmless_val", "pos_test": "harmful_test", "neg_test": "harmless_test",
}  # fmt: skip


# --- Built-in concepts and sampling ---------------------------------------------------------------


@pytest.mark.parametrize(("sizes", "seed"), [((32, 16, 24), 42), ((5, 3, 7), 0), ((0, 2, 1), 123)])
def test_refusal_concept_draws_exactly_what_sample_paper_draws(sizes, seed):
    paper = sample_paper(*sizes, seed=seed)
    sample = sample_concept(builtin_concept("refusal"), *sizes, seed=seed)
    for split, paper_split in PAPER_SPLITS.items():
        assert sample.instructions()[split] == paper.instructions()[paper_split]
    assert sample.prompts("pos_test") == paper.harmful_test  # categories kept
    assert sample.prompts("neg_test") == paper.harmless_test


def test_refusal_concept_at_paper_sizes_has_the_paper_fingerprints():
    sample = sample_concept(builtin_concept("refusal"), 180, 100, 512, seed=42)
    assert {PAPER_SPLITS[s]: f for s, f in sample.fingerprints().items()} == PAPER_FINGERPRINTS


def test_refusal_concept_labels_and_judge():
    refusal = builtin_concept("refusal")
    assert isinstance(refusal.judge, SubstringJudge) and refusal.metric == "refusal"
    assert (refusal.labels.positive_key, refusal.labels.negative_key) == ("harmful", "harmless")
    assert (refusal.ablation_effect, refusal.addition_effect) == ("lower", "raise")


def test_chinese_concept_pairs_the_same_instructions_with_and_without_the_request():
    chinese = builtin_concept("chinese")
    sample = sample_concept(chinese, 32, 16, 24, seed=42)
    for kind in ("train", "val", "test"):
        pos, neg = getattr(sample, f"pos_{kind}"), getattr(sample, f"neg_{kind}")
        assert pos == [x + CHINESE_SUFFIX for x in neg]
        assert not any(x.endswith(CHINESE_SUFFIX) for x in neg)
    seen = set(sample.neg_train) | set(sample.neg_val)
    assert not seen & set(sample.neg_test)
    assert isinstance(chinese.judge, CJKJudge) and chinese.labels.judged == "Chinese reply"
    assert sample.sizes == {"pos_train": 32, "neg_train": 32, "pos_val": 16, "neg_val": 16, "pos_test": 24, "neg_test": 24}


def test_chinese_test_instructions_never_occur_in_its_training_splits():
    # The harmless splits are disjoint, so no seed can draw a test instruction seen in training.
    chinese = builtin_concept("chinese")
    train_val = {p.instruction for kind in ("train", "val") for p in chinese.negative.splits[kind]}
    assert not train_val & {p.instruction for p in chinese.negative.splits["test"]}


def test_sampling_is_seeded_and_private():
    import random

    chinese = builtin_concept("chinese")
    random.seed(7)
    state = random.getstate()
    a = sample_concept(chinese, 8, 4, 4, seed=1)
    assert random.getstate() == state
    assert a == sample_concept(chinese, 8, 4, 4, seed=1)
    assert a.neg_train != sample_concept(chinese, 8, 4, 4, seed=2).neg_train


def test_pooled_prompts_split_into_disjoint_train_val_test(tmp_path):
    (tmp_path / "pos.jsonl").write_text(
        "\n".join(json.dumps({"instruction": f"Answer in French: question {i}", "category": f"c{i % 3}"}) for i in range(20))
    )
    (tmp_path / "neg.txt").write_text("\n".join(f"Question {i}" for i in range(20)) + "\n\n")
    concept = Concept("french", tmp_path / "pos.jsonl", tmp_path / "neg.txt", judge=PhraseJudge(["le"]))
    sample = sample_concept(concept, 6, 4, 5, seed=3)
    for side in ("pos", "neg"):
        parts = [set(getattr(sample, f"{side}_{kind}")) for kind in ("train", "val", "test")]
        assert [len(p) for p in parts] == [6, 4, 5]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    pos_test = sample.prompts("pos_test")
    assert all(p.category == f"c{int(p.instruction.rsplit(' ', 1)[1]) % 3}" for p in pos_test)
    assert sample.categories["neg_train"] == [None] * 6
    assert ConceptSample.from_dict(json.loads(json.dumps(sample.to_dict()))) == sample


def test_too_few_prompts_names_the_concept_the_side_and_the_file(tmp_path):
    (tmp_path / "neg.txt").write_text("a\nb\nc\n")
    concept = Concept("tiny", ["x", "y", "z", "w"], tmp_path / "neg.txt", judge=PhraseJudge(["le"]))
    with pytest.raises(ConceptError, match=r"'tiny': cannot sample 2 \+ 1 \+ 1 = 4 negative prompts .*/neg.txt: it has only 3"):
        sample_concept(concept, 2, 1, 1)
    with pytest.raises(ConceptError, match=r"Cannot sample 7000 prompts from split 'harmless_test': it has only 6266; use n_test <= 6266 "
                       r"\(Concept 'chinese', negative test prompts\)"):
        sample_concept(builtin_concept("chinese"), 1, 1, 7000)


# --- The Python API ---------------------------------------------------------------------------------


def test_a_function_is_a_judge_and_its_output_is_checked():
    concept = Concept(
        "french", ["Say hi. Answer in French."], ["Say hi."],
        judge=lambda prompts, replies: [r.startswith("Bonjour") for r in replies],
    )  # fmt: skip
    assert concept.build_judge().judge(["a", "b"], ["Bonjour !", "Hi!"]) == [True, False]
    broken = Concept("broken", ["a"], ["b"], judge=lambda p, r: [1.0] * len(r))
    with pytest.raises(JudgeError, match="Judge 'callable' returned 1.0"):
        broken.build_judge().judge(["a"], ["x"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(judge="cjk"), "judge must be a Judge, a ModelJudgeSpec or a function"),
        (dict(positive=[]), "'c', positive prompts: The list of prompts is empty"),
        (dict(negative=["ok", 3]), "'c', negative prompts: Prompt 1 of the list"),
        (dict(positive={"train": ["a"], "val": ["b"]}), "exactly the keys train, val and test"),
        (dict(ablation_effect="drop"), "ablation_effect must be one of lower, raise"),
        (dict(paired=True, positive=["a", "b"]), "paired, so positive and negative prompts"),
        (dict(name=""), "non-empty name"),
    ],
)
def test_bad_concepts_fail_naming_the_field(kwargs, match):
    fields = {**dict(name="c", positive=["a"], negative=["b"], judge=PhraseJudge(["x"])), **kwargs}
    with pytest.raises(ConceptError, match=match):
        Concept(**fields)


def test_labels_must_be_identifiers_where_files_use_them():
    with pytest.raises(ConceptError, match="'positive_key' must be a lower-case identifier"):
        ConceptLabels(positive_key="Asks French")
    with pytest.raises(ConceptError, match="must differ"):
        ConceptLabels(positive_key="same", negative_key="same")


def test_model_judge_spec_is_built_on_the_loaded_model(tiny_model):
    concept = Concept("french", ["a"], ["b"], judge=ModelJudgeSpec("Is the reply in French?"))
    assert concept.needs_judge_model
    with pytest.raises(ConceptError, match="pass load_judge_model"):
        concept.build_judge()
    requested = []
    judge = concept.build_judge(lambda name: requested.append(name) or tiny_model, batch_size=2)
    assert isinstance(judge, ModelJudge) and judge.question == "Is the reply in French?"
    assert requested == [None] and judge.batch_size == 2


def test_describe_changes_when_a_prompt_file_changes(tmp_path):
    path = tmp_path / "pos.txt"
    path.write_text("one\ntwo\n")
    before = Concept("c", path, ["x"], judge=PhraseJudge(["y"])).describe()
    path.write_text("one\nthree\n")
    after = Concept("c", path, ["x"], judge=PhraseJudge(["y"])).describe()
    assert before["positive"]["all"]["sha256"] != after["positive"]["all"]["sha256"]
    assert before["negative"] == after["negative"]
    json.dumps(builtin_concept("chinese").describe())  # JSON-safe


# --- Concept files ---------------------------------------------------------------------------------


def _write(folder, name, text):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def prompt_files(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "pos.jsonl").write_text("\n".join(json.dumps({"instruction": f"Q{i}. Answer in French."}) for i in range(12)))
    (data / "neg.txt").write_text("\n".join(f"Q{i}." for i in range(12)))
    (data / "neg.csv").write_text("instruction,category\n" + "\n".join(f"Q{i}.,c" for i in range(12)))
    return tmp_path


def test_concept_file_with_pools_labels_and_expectations(prompt_files, monkeypatch):
    path = _write(prompt_files, "french.toml", """
        name = "french"
        positive = "data/pos.jsonl"
        negative = "data/neg.txt"
        [judge]
        kind = "regex"
        pattern = "\\\\b(le|la|les)\\\\b"
        ignore_case = true
        [labels]
        positive = "asks for French"
        negative = "plain"
        judged = "French reply"
        positive_key = "french"
        negative_key = "plain"
        [expect]
        ablation = "lower"
        addition = "raise"
    """)
    monkeypatch.chdir("/")  # paths are relative to the file, not to the working directory
    concept = load_concept(path)
    assert concept.name == "french" and not concept.paired
    assert isinstance(concept.judge, RegexJudge) and concept.judge.judge(["p"], ["La tour."]) == [True]
    assert concept.labels == ConceptLabels("asks for French", "plain", "French reply", "french", "plain")
    sample = sample_concept(concept, 4, 2, 3, seed=0)
    assert all(x.endswith("Answer in French.") for x in sample.pos_train)
    with pytest.raises(ConceptError, match=f"Concept 'french' \\({path}\\): cannot sample 10 \\+ 1 \\+ 2 = 13 positive"):
        sample_concept(concept, 10, 1, 2)


def test_concept_file_with_split_tables_shipped_names_and_a_pair(prompt_files):
    splits = _write(prompt_files, "splits.toml", """
        name = "harm"
        [positive]
        train = "harmful_train"
        val = "harmful_val"
        test = "jailbreakbench"
        [negative]
        train = "data/neg.csv"
        val = "data/neg.txt"
        test = "harmless_test"
        [judge]
        kind = "phrases"
        phrases = ["I can't", "Je ne"]
    """)
    concept = load_concept(splits)
    assert concept.positive.fixed and concept.positive.sources["test"] == "jailbreakbench"
    assert concept.judge.phrases == ("I can't", "Je ne")
    paired = _write(prompt_files, "paired.toml", """
        name = "french"
        base = "data/neg.txt"
        positive_suffix = " Answer in French."
        [judge]
        kind = "cjk"
        threshold = 0.5
    """)
    concept = load_concept(paired)
    sample = sample_concept(concept, 3, 2, 2, seed=1)
    assert concept.paired and sample.pos_val == [x + " Answer in French." for x in sample.neg_val]
    assert concept.judge.threshold == 0.5


GOOD_JUDGE = '[judge]\nkind = "cjk"\n'


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ('positive = "data/pos.jsonl"\nnegative = "data/neg.txt"\n' + GOOD_JUDGE, "key 'name' must be a non-empty string"),
        ('name = "x"\npositive = "data/pos.jsonl"\nnegative = "data/neg.txt"\n', "missing key 'judge'"),
        ('name = "x"\nnegative = "data/neg.txt"\n' + GOOD_JUDGE, "missing key 'positive'"),
        ('name = "x"\ncolour = 1\n' + GOOD_JUDGE, "unknown key 'colour'; valid keys: name, positive"),
        ('name = "x"\npositive = "a.txt"\nnegative = "b.txt"\n[judge]\nkind = "vibes"\n', r"\[judge\] has unknown kind 'vibes'"),
        ('name = "x"\npositive = "a.txt"\nnegative = "b.txt"\n[judge]\npattern = "a"\n', r"\[judge\] has no 'kind' key"),
        ('name = "x"\npositive = "a.txt"\nnegative = "b.txt"\n[judge]\nkind = "regex"\npattern = "(a"\n',
         r"\[judge\]: Bad regular expression '\(a'"),
        ('name = "x"\npositive = "a.txt"\nnegative = "b.txt"\n[judge]\nkind = "regex"\n', "kind 'regex' needs the key 'pattern'"),
        ('name = "x"\npositive = "a.txt"\nnegative = "b.txt"\n[judge]\nkind = "phrases"\nphrases = []\n', "the list is empty"),
        ('name = "x"\npositive = "a.txt"\nnegative = "b.txt"\n[judge]\nkind = "phrases"\nphrases = "I can"\n',
         "key 'phrases' has the wrong type"),
        ('name = "x"\npositive = "a.txt"\nnegative = "b.txt"\n[judge]\nkind = "cjk"\nthreshold = 1.5\n', r"in \(0, 1\], got 1.5"),
        ('name = "x"\npositive = "a.txt"\nnegative = "b.txt"\n[judge]\nkind = "cjk"\nthreshold = 0\n', r"in \(0, 1\], got 0"),
        ('name = "x"\npositive = "a.txt"\nnegative = "b.txt"\n[judge]\nkind = "cjk"\npattern = "a"\n',
         "unknown key 'pattern' for kind 'cjk'"),
        ('name = "x"\npositive = "data/missing.jsonl"\nnegative = "data/neg.txt"\n' + GOOD_JUDGE,
         "key 'positive': Dataset file not found: .*data/missing.jsonl"),
        ('name = "x"\npositive = "data/bad.jsonl"\nnegative = "data/neg.txt"\n' + GOOD_JUDGE,
         r"key 'positive': .*bad.jsonl: malformed JSON on line 2"),
        ('name = "x"\npositive = "data/pos.jsonl"\nnegative = "data/neg.yaml"\n' + GOOD_JUDGE,
         "key 'negative': .*unsupported file type '.yaml'"),
        ('name = "x"\npositive = "data/pos.jsonl"\n[negative]\ntrain = "data/neg.txt"\n' + GOOD_JUDGE,
         r"\[negative\] missing key 'val'"),
        ('name = "x"\npositive = 3\nnegative = "data/neg.txt"\n' + GOOD_JUDGE, "key 'positive' must be a file path"),
        ('name = "x"\nbase = "data/neg.txt"\n' + GOOD_JUDGE, "missing key 'positive_suffix'"),
        ('name = "x"\nbase = "data/neg.txt"\npositive_suffix = " Fr."\npositive = "data/pos.jsonl"\n' + GOOD_JUDGE,
         "key 'positive' cannot be combined with 'base'"),
        ('name = "x"\npositive = "data/pos.jsonl"\nnegative = "data/neg.txt"\n' + GOOD_JUDGE + '[labels]\ncolor = "x"\n',
         r"\[labels\] unknown key 'color'"),
        ('name = "x"\npositive = "data/pos.jsonl"\nnegative = "data/neg.txt"\n' + GOOD_JUDGE + '[expect]\nablation = "down"\n',
         r"\[expect\] key 'ablation' must be \"lower\" or \"raise\""),
        ('name = "x"\npositive = "data/pos.jsonl"\nnegative = "data/neg.txt\n', "is not valid TOML"),
    ],
)
def test_bad_concept_files_fail_in_one_line_naming_the_file(prompt_files, body, match):
    (prompt_files / "data" / "bad.jsonl").write_text('{"instruction": "ok"}\n{"instruction": \n')
    (prompt_files / "data" / "neg.yaml").write_text("- Q1.\n")
    path = prompt_files / "concept.toml"
    path.write_text(body)
    with pytest.raises(ConceptError, match=match) as info:
        load_concept(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_missing_concept_file():
    with pytest.raises(ConceptError, match="Concept file nowhere.toml does not exist"):
        load_concept("nowhere.toml")


# --- The cosmic-tl run flags ------------------------------------------------------------------------


def _parse(*argv):
    parser = argparse.ArgumentParser()
    add_concept_arguments(parser)
    return concept_from_args(parser.parse_args(list(argv)))


def test_flags_default_to_refusal_and_name_builtins_and_files(prompt_files):
    assert _parse().name == "refusal"
    assert _parse("--concept", "chinese").name == "chinese"
    path = _write(prompt_files, "c.toml", 'name = "mine"\npositive = "data/pos.jsonl"\nnegative = "data/neg.txt"\n' + GOOD_JUDGE)
    assert _parse("--concept", str(path)).name == "mine"
    refusal_by_model = _parse("--judge", "model:Does the reply refuse?")
    assert refusal_by_model.name == "refusal" and refusal_by_model.judge == ModelJudgeSpec("Does the reply refuse?")


def test_flags_for_your_own_prompt_sets(prompt_files):
    data = prompt_files / "data"
    concept = _parse("--positive", str(data / "pos.jsonl"), "--negative", str(data / "neg.txt"),
                     "--judge", "regex:Answer", "--concept-name", "french")  # fmt: skip
    assert concept.name == "french" and concept.judge.pattern == "Answer" and not concept.paired
    paired = _parse("--negative", str(data / "neg.txt"), "--positive-suffix", " Réponds en français.", "--judge", "cjk:0.4")
    assert paired.paired and paired.name == "custom" and paired.judge.threshold == 0.4
    assert paired.positive.splits["all"][0] == Prompt("Q0. Réponds en français.")


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--positive", "a.txt", "--negative", "b.txt"], "need a judge: add --judge"),
        (["--concept", "chinese", "--positive", "a.txt"], "cannot be combined"),
        (["--positive", "a.txt", "--judge", "cjk"], "--negative FILE is missing"),
        (["--negative", "harmless_train", "--judge", "cjk"], "--positive FILE is missing"),
        (["--concept", "french"], "Unknown concept 'french'; built-in concepts: refusal, chinese"),
        (["--concept-name", "x"], "--concept-name names a --positive/--negative concept"),
        (["--judge", "vibes"], "--judge 'vibes': unknown judge kind 'vibes'"),
        (["--judge", "regex:"], "needs an argument, e.g. --judge 'regex:PATTERN'"),
        (["--judge", "regex:(a"], r"--judge 'regex:\(a': Bad regular expression"),
        (["--judge", "cjk:high"], "the CJK threshold must be a number"),
        (["--judge", "cjk:2"], r"must be a number in \(0, 1\], got 2.0"),
        (["--judge", "phrases:a,,b"], "Phrase 1 must be a non-empty string"),
        (["--judge", "substring:x"], "takes no argument"),
    ],
)
def test_bad_flags_fail_naming_the_flag(argv, match):
    with pytest.raises(ConceptError, match=match):
        _parse(*argv)


def test_judge_specs():
    assert judge_from_spec("phrases:I can't, Je ne ").phrases == ("I can't", "Je ne")
    assert isinstance(judge_from_spec("substring"), SubstringJudge)
    assert judge_from_spec("cjk").threshold == CJKJudge().threshold
    assert judge_from_spec("regex:a:b").pattern == "a:b"  # only the first colon separates the kind
    assert judge_from_spec("model: Is the reply in French? ") == ModelJudgeSpec("Is the reply in French?")


def test_options_rebuild_the_same_concept_as_the_flags(prompt_files):
    from cosmic_tl.concepts import CONCEPT_OPTIONS, concept_from_options

    parser = argparse.ArgumentParser()
    add_concept_arguments(parser)
    args = parser.parse_args(["--negative", str(prompt_files / "data" / "neg.txt"), "--positive-suffix", " Fr.", "--judge", "cjk"])
    stored = {key: getattr(args, key) for key in CONCEPT_OPTIONS}  # what a run configuration keeps
    assert concept_from_options(**stored).describe() == concept_from_args(args).describe()
