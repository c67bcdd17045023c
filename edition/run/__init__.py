"""One run: its options, lifecycle, folder, manifest, report, preflight and repair."""
