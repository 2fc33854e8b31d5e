from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


# Tiny random Qwen3-TTS checkpoints (MODEL helper): built once per session with `qwen_tts.tiny`.
@pytest.fixture(scope="session")
def tiny_factory(tmp_path_factory: pytest.TempPathFactory):
    """build(model_type, seed=0, eos="normal") -> Path of a tiny checkpoint folder, cached for the session."""
    from qwen_tts.tiny import write_tiny_checkpoint

    built: dict[tuple[str, int, str], object] = {}

    def build(model_type: str, seed: int = 0, eos: str = "normal"):
        key = (model_type, seed, eos)
        if key not in built:
            folder = tmp_path_factory.mktemp(f"tiny_{model_type}_{seed}_{eos}")
            built[key] = write_tiny_checkpoint(folder, model_type, seed=seed, eos=eos)
        return built[key]

    return build


@pytest.fixture(scope="session")
def tiny_custom_voice(tiny_factory):
    return tiny_factory("custom_voice")


@pytest.fixture(scope="session")
def tiny_voice_design(tiny_factory):
    return tiny_factory("voice_design")


@pytest.fixture(scope="session")
def tiny_base(tiny_factory):
    return tiny_factory("base")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch limited to one intra-op thread for a test module, the caller's setting restored after it.

    Tiny models: extra threads only add wake-up latency (and fight the other test workers for 2 cores).
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_bot_settings(tmp_path, tiny_custom_voice, tiny_base, tiny_voice_design):
    """Bot settings over the tiny checkpoints on CPU, with database, outputs and data in the test's tmp dir."""
    from bot.settings import Settings

    return Settings(
        custom_voice_model=str(tiny_custom_voice), base_model=str(tiny_base), voice_design_model=str(tiny_voice_design),
        device="cpu", dtype="float32", data_dir=tmp_path / "data", outputs_dir=tmp_path / "out",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'n.db'}", job_timeout_s=120,
    )  # fmt: skip
