# bench/ is a package so that bench/export.py can reuse bench/projection.py's baseline.
