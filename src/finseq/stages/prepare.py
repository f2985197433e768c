"""prepare: raw OHLCV CSVs → scaled causal features, labels and splits (data/prepared)."""

from finseq.atomic import write_json
from finseq.dataset import data_summary, prepare_dataset
from finseq.load import load_series
from finseq.params import load_params
from finseq.progress import tracked
from finseq.stages import DATA_METRICS, PREPARED_DIR, run_stage


def main() -> None:
    params = load_params()
    files = params.data.files
    frames = {
        path: load_series(path) for path in tracked(files, len(files), "prepare", "files read")
    }
    data = prepare_dataset(frames, params.label, params.split)
    data.save(PREPARED_DIR)
    write_json(DATA_METRICS, data_summary(data))


if __name__ == "__main__":
    run_stage(main)
