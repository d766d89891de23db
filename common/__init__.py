"""Names shared by every package (metric keys, tag keys). Pure Python: no torch, no Ray."""
