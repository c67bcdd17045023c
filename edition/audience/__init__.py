"""To whom: customer sources and rows, segments, selection, audience rules, suppression."""
