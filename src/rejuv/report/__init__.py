"""What the reports share: statistics over seeds, figures, HTML pages from templates, model cards."""
