import adopt_kernels as ak


def test_enabled_without_variable():
    assert ak.enabled("attention")
    assert ak.enabled("rms_norm")


def test_empty_variable_disables_nothing(monkeypatch):
    monkeypatch.setenv("ADOPT_DISABLE", "")
    assert all(ak.enabled(name) for name in ak.KERNELS)


def test_named_kernel_disabled_others_not(monkeypatch):
    monkeypatch.setenv("ADOPT_DISABLE", "attention")
    assert not ak.enabled("attention")
    assert ak.enabled("rms_norm")
    # A name is a whole comma-separated entry, not a substring.
    assert ak.enabled("attention_supported_extra")
    assert ak.enabled("atten")


def test_comma_separated_list_with_spaces_and_case(monkeypatch):
    monkeypatch.setenv("ADOPT_DISABLE", " Attention , rms_norm,,")
    assert not ak.enabled("attention")
    assert not ak.enabled("rms_norm")
    assert ak.enabled("softmax")


def test_all_disables_everything(monkeypatch):
    monkeypatch.setenv("ADOPT_DISABLE", "softmax,all")
    assert not any(ak.enabled(name) for name in ak.KERNELS)
    assert not ak.enabled("anything")


def test_variable_read_on_every_call(monkeypatch):
    monkeypatch.setenv("ADOPT_DISABLE", "gated_mlp")
    assert not ak.enabled("gated_mlp")
    monkeypatch.setenv("ADOPT_DISABLE", "fused_qkv")
    assert ak.enabled("gated_mlp")
    assert not ak.enabled("fused_qkv")


def test_the_environment_is_read_as_os_environ_reads_it(monkeypatch):
    """adopt_kernels.environ reads os.environ's own dictionary (a decoded token makes dozens of
    reads a layer): every change made through os.environ shows at once, as it does there."""
    import os

    from adopt_kernels import environ

    name = "ADOPT_TEST_ENVIRON_READ"
    monkeypatch.delenv(name, raising=False)
    assert environ.get(name) is None and environ.get(name, "x") == "x"
    for value in ("1", "", "0", "caf\u00e9", "a,b , c", "1"):
        monkeypatch.setenv(name, value)
        assert environ.get(name) == os.environ.get(name) == value
    os.environ[name] = "direct"
    assert environ.get(name) == "direct"
    del os.environ[name]
    assert environ.get(name) is None
    os.environ.update({name: "updated"})
    assert environ.get(name, "x") == "updated"
    monkeypatch.delenv(name, raising=False)
