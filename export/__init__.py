"""Conversion to the stepwise form, ONNX export, engines, parity."""
