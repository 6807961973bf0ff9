"""The KServe predictor of ticketflow and its helpers."""
