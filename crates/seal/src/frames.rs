//! Length-prefixed frames: the body of a sealed stream
//! (`application/vnd.attesta.sealed-stream`) is `u32 BE length ‖ bytes`,
//! repeated. [`FrameReader`] is the incremental parser a client feeds with
//! the body as it arrives; it never allocates for a declared length, only
//! for bytes actually received, and refuses a frame over its limit as soon
//! as the length prefix is read.

/// Bytes of the length prefix of every frame.
pub const FRAME_PREFIX_LEN: usize = 4;
/// Longest frame content (8 MiB): the final chunk of a stream carries the
/// whole completion summary, and 8 MiB bounds what one frame can make a
/// client buffer.
pub const MAX_FRAME_LEN: usize = 8 << 20;

/// Why a byte stream is not a sequence of frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A length prefix declares more than the limit.
    #[error("stream frame of {len} bytes exceeds the {max} byte limit")]
    TooLarge {
        /// Declared length.
        len: u64,
        /// Limit.
        max: usize,
    },
    /// The body ended inside a frame (prefix or content).
    #[error("stream body ends inside a frame ({buffered} bytes of an incomplete frame)")]
    Truncated {
        /// Bytes of the incomplete frame received.
        buffered: usize,
    },
}

impl FrameError {
    /// Stable code (see `docs/PROTOCOL.md`, "Sealed streams").
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::TooLarge { .. } => "stream_frame_too_large",
            FrameError::Truncated { .. } => "truncated_stream",
        }
    }
}

/// `u32 BE length ‖ content`; content over [`MAX_FRAME_LEN`] is refused.
pub fn encode_frame(content: &[u8]) -> Result<Vec<u8>, FrameError> {
    let too_large = || FrameError::TooLarge {
        len: u64::try_from(content.len()).unwrap_or(u64::MAX),
        max: MAX_FRAME_LEN,
    };
    if content.len() > MAX_FRAME_LEN {
        return Err(too_large());
    }
    let len = u32::try_from(content.len()).map_err(|_| too_large())?;
    let mut out = Vec::with_capacity(FRAME_PREFIX_LEN + content.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(content);
    Ok(out)
}

/// Incremental frame parser: [`push`](Self::push) bytes as they arrive,
/// then take complete frames with [`next_frame`](Self::next_frame) until it
/// returns `None`; at the end of the body, [`finish`](Self::finish) says
/// whether an incomplete frame was left. Pure and panic-free on any input.
///
/// Memory: the buffer holds what was pushed and not yet taken, so a caller
/// that drains after every push holds at most one incomplete frame (≤ the
/// limit) plus the last push.
#[derive(Debug, Clone)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Start of the unread bytes in `buf` (consumed bytes are dropped lazily,
    /// so many small frames in one push cost linear time).
    start: usize,
    max: usize,
    failed: Option<FrameError>,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self::new(MAX_FRAME_LEN)
    }
}

impl FrameReader {
    /// A reader refusing frames over `max_frame_len` bytes (at most
    /// [`MAX_FRAME_LEN`]: a client may only lower the protocol's bound).
    pub fn new(max_frame_len: usize) -> Self {
        FrameReader {
            buf: Vec::new(),
            start: 0,
            max: max_frame_len.min(MAX_FRAME_LEN),
            failed: None,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame's content, `None` if more bytes are needed.
    /// An oversized frame fails the reader for good.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let rest = self.buf.get(self.start..).unwrap_or_default();
        let Some((prefix, body)) = rest.split_first_chunk::<FRAME_PREFIX_LEN>() else {
            return Ok(None);
        };
        let declared = u32::from_be_bytes(*prefix);
        let len = usize::try_from(declared)
            .ok()
            .filter(|&l| l <= self.max)
            .ok_or_else(|| FrameError::TooLarge {
                len: u64::from(declared),
                max: self.max,
            });
        let len = match len {
            Ok(len) => len,
            Err(e) => {
                self.failed = Some(e.clone());
                return Err(e);
            }
        };
        let Some(frame) = body.get(..len) else {
            return Ok(None);
        };
        let frame = frame.to_vec();
        self.start = self
            .start
            .saturating_add(FRAME_PREFIX_LEN)
            .saturating_add(len);
        Ok(Some(frame))
    }

    /// Bytes received and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    /// At the end of the body: an error if a frame was left incomplete
    /// (or the reader failed). Call after draining [`next_frame`](Self::next_frame).
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(FrameError::Truncated { buffered }),
        }
    }
}
