"""The pieces of the HTML report: tidy metrics, HTML tables, training figures."""
