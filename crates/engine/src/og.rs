//! OpenGradient tensor codec (filled in next).
