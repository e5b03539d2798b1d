"""distributed.py: the batch split every rank checks."""
import pytest


def test_batch_share_is_each_ranks_part_or_names_the_split():
    from trqat.distributed import batch_share
    assert batch_share(128, 2) == 64 and batch_share(128, 2, 4) == 64 and batch_share(96, 3) == 32
    with pytest.raises(ValueError, match=r"data.batch_size \(100\) .* multiple of 3 rank\(s\) x 2 micro-batch\(es\)"):
        batch_share(100, 3, 2)
