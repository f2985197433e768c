"""window: window end indices per split over the prepared feature matrix (data/windows)."""

from finseq.dataset import PreparedData, make_window_sets
from finseq.params import load_params
from finseq.stages import PREPARED_DIR, WINDOWS_DIR, run_stage


def main() -> None:
    params = load_params()
    data = PreparedData.load(PREPARED_DIR, mmap=True)
    make_window_sets(data, params.window).save(WINDOWS_DIR)


if __name__ == "__main__":
    run_stage(main)
