"""Data rows (JSONL or parquet, validated), the one rule from a row to token ids, and calibration sets."""
