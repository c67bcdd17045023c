"""What a person checks: previews, approval, the approved send, diffs between runs."""
