import torch

from emotalk3d_addon.backend.speech.cache import FeatureCache


def test_hit_miss_and_encoder_id_in_key():
    cache = FeatureCache()
    feats = torch.randn(10, 4)
    assert cache.get("a", "enc1") is None
    cache.put("a", "enc1", feats)
    assert torch.equal(cache.get("a", "enc1"), feats)
    assert cache.get("a", "enc2") is None
    assert (cache.hits, cache.misses) == (1, 2)


def test_lru_eviction_within_byte_budget():
    cache = FeatureCache(max_bytes=3 * 400)  # three 10x10 float32 entries
    for name in "abc":
        cache.put(name, "e", torch.zeros(10, 10))
    cache.get("a", "e")                    # a is now most recent
    cache.put("d", "e", torch.zeros(10, 10))
    assert cache.get("b", "e") is None     # least recent went
    assert cache.get("a", "e") is not None and len(cache) == 3
    cache.put("huge", "e", torch.zeros(100, 100))   # larger than the budget: not kept
    assert cache.get("huge", "e") is None and len(cache) == 3


def test_disk_cache_survives_a_new_process_and_ignores_damaged_files(tmp_path):
    feats = torch.randn(7, 3)
    FeatureCache(directory=tmp_path).put("h", "e", feats)
    fresh = FeatureCache(directory=tmp_path)
    assert torch.equal(fresh.get("h", "e"), feats)
    for f in tmp_path.glob("*.safetensors"):
        f.write_bytes(b"garbage")
    assert FeatureCache(directory=tmp_path).get("h", "e") is None
    assert not list(tmp_path.glob("*.safetensors"))
