"""gpu_bench's workload of one's own: JSON objects, for exactly one kernel, else exit 2 with a message."""
from adopt_harness import gpu_bench


def test_a_workload_must_be_json(capsys):
    assert gpu_bench.main(["--kernels", "layer_norm", "--workload", "{rows: 4"]) == 2
    assert "--workload is not JSON" in capsys.readouterr().err


def test_a_workload_takes_exactly_one_kernel(capsys):
    for kernels in ("", "layer_norm,rope"):
        assert gpu_bench.main(["--kernels", kernels, "--workload", '{"rows": 4, "n": 8}']) == 2
        assert "exactly one kernel" in capsys.readouterr().err
    assert gpu_bench.main(["--kernels", "layer_norm", "--workload", "[4, 8]"]) == 2
