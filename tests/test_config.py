import pytest

from diag.config import PrepareConfig, SourceConfig, apply_overrides, from_dict, load_prepare_config
from diag.errors import DiagError


def test_defaults_validate_and_fingerprint_is_stable():
    a, b = PrepareConfig().validate(), PrepareConfig().validate()
    assert a.fingerprint() == b.fingerprint()
    b.windows.length = 1024
    assert a.fingerprint() != b.fingerprint()


def test_load_toml_with_overrides(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[source]\nkind = "cwru"\npath = "x"\nchannels = ["DE"]\n[windows]\nlength = 1024\n')
    cfg = load_prepare_config(p, ["windows.hop=256", "split.test_fraction=0.3", "source.label_by=type"])
    assert cfg.windows.length == 1024 and cfg.windows.hop == 256
    assert cfg.split.test_fraction == pytest.approx(0.3)
    # Extra keys of [source] become reader options.
    assert cfg.source.options == {"channels": ["DE"], "label_by": "type"}


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("windows.lenght=10", "windows.lenght: unknown setting"),
        ("windows.length=abc", "windows.length: expected an integer"),
        ("windows.length=4", "windows.length: must be at least 16"),
        ("split.method=random", "allow_leaky"),
        ("split.method=condition", "test_conditions"),
        ("split.guard_windows=0.5", "guard_windows"),
        ("transform.kind=wavelet", "transform.kind: unknown"),
        ("source.kind=foo", "source.kind: unknown"),
        ("nonsense", "expected section.key=value"),
        ("windw.length=1024", "diag prepare reads only source.*, windows.*"),
        ("train.lr=0.1", "diag prepare reads only"),
        ("source.path=/data", "simulator reads no files"),
    ],
)
def test_bad_settings_give_one_line_errors(override, fragment):
    with pytest.raises(DiagError) as e:
        load_prepare_config(None, [override])
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_and_malformed_config_file(tmp_path):
    with pytest.raises(DiagError, match="config file not found"):
        load_prepare_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[source\nkind=")
    with pytest.raises(DiagError, match="not valid TOML"):
        load_prepare_config(bad)


def test_unknown_tables_are_refused_not_ignored(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[transfrom]\nkind = 'stft'\n[train]\nepochs = 3\n")
    with pytest.raises(DiagError, match=r"unknown table\(s\) \[transfrom\]"):
        load_prepare_config(p)
    p.write_text("[transform]\nkind = 'stft'\n[train]\nepochs = 3\n[pretrain]\nepochs = 2\n")
    assert load_prepare_config(p).transform.kind == "stft"


def test_from_dict_lists_from_cli_strings():
    data = apply_overrides({}, ["split.test_conditions=3HP,2HP"])
    cfg = from_dict(PrepareConfig, data)
    assert cfg.split.test_conditions == ["3HP", "2HP"]
    assert isinstance(cfg.source, SourceConfig)
