"""Checkpoint I/O: safetensors read lazily (`reader`), written block by block (`writer`), into an output
folder that appears only when complete (`output`); dtypes and names of the format (`format`); JSONL (`jsonl`)."""
