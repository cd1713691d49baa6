from kinema.model.data import shard_name


def test_a_dataset_simulated_again_with_new_answers_gets_a_new_shard(tmp_path):
    root = tmp_path / "stable_stack"
    (root / "meta" / "episodes").mkdir(parents=True)
    (root / "meta" / "info.json").write_text("{}")
    ep = root / "meta" / "episodes" / "file-000.parquet"
    ep.write_bytes(b"qa: 0.03 s")
    first = shard_name(root)
    assert shard_name(root) == first and first.startswith("stable_stack-")
    ep.write_bytes(b"qa: there is no collision")
    assert shard_name(root) != first
