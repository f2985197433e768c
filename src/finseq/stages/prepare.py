"""prepare: raw OHLCV CSVs → scaled causal features, labels and splits (data/prepared)."""

from finseq.atomic import write_json
from finseq.dataset import data_summary, prepare_dataset, read_series, resolve_data_workers
from finseq.params import load_params
from finseq.stages import DATA_METRICS, PREPARED_DIR, run_stage


def main() -> None:
    params = load_params()
    files = params.data.files
    workers = resolve_data_workers(params.data.workers, len(files))
    frames, featurised = read_series(files, params.label, workers)
    data = prepare_dataset(frames, params.label, params.split, featurised)
    data.save(PREPARED_DIR)
    write_json(DATA_METRICS, data_summary(data))


if __name__ == "__main__":
    run_stage(main)
