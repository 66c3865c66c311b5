//! The tract-onnx backend (filled in next).
