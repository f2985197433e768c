"""Window end indices and the batch gather."""

import numpy as np
import torch

from finseq.windows import gather_windows, segment_starts, window_ends, window_offsets


def test_segment_starts_restart_at_every_series_or_split_change():
    series = np.array([0, 0, 0, 0, 1, 1, 1])
    split = np.array([0, 0, 1, 1, 0, 0, 2])
    assert segment_starts(series, split).tolist() == [0, 0, 2, 2, 4, 4, 6]


def test_window_ends_need_a_full_window_inside_one_run():
    series = np.zeros(10, dtype=int)
    split = np.array([0] * 6 + [1] * 4)
    is_sample = np.ones(10, dtype=bool)
    ends = window_ends(series, split, is_sample, seq_len=3, stride=1)
    assert ends.tolist() == [2, 3, 4, 5, 8, 9]


def test_stride_counts_from_the_first_complete_window_and_non_samples_are_skipped():
    series = np.zeros(12, dtype=int)
    split = np.zeros(12, dtype=int)
    is_sample = np.ones(12, dtype=bool)
    is_sample[7] = False
    ends = window_ends(series, split, is_sample, seq_len=2, stride=2)
    assert ends.tolist() == [1, 3, 5, 9, 11]
    assert ends.dtype == np.int64


def test_a_gathered_batch_equals_the_slices_it_stands_for():
    features = torch.arange(40, dtype=torch.float32).reshape(20, 2)
    ends = torch.tensor([4, 19, 7])
    batch = gather_windows(features, ends, window_offsets(5))
    assert batch.shape == (3, 5, 2)
    for row, end in enumerate(ends.tolist()):
        assert torch.equal(batch[row], features[end - 4 : end + 1])


def test_window_offsets_are_made_on_the_device_asked_for():
    """The meta device stands in for an accelerator: no data, but a device of its own."""
    assert window_offsets(3).tolist() == [-2, -1, 0]
    assert window_offsets(3, device="meta").device.type == "meta"
