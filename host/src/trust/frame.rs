//! Length-prefixed JSON messages for the join handshake: a 4-byte
//! big-endian length, then that many bytes of JSON. Lengths are bounded by
//! the reader, so a peer cannot make it allocate more than it allows.

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Write `message` as one frame and flush it.
pub async fn write_message<W, T>(writer: &mut W, message: &T) -> Result<()>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let body = serde_json::to_vec(message).context("cannot encode a message")?;
    let len = u32::try_from(body.len()).context("a message is over 4 GiB")?;
    writer.write_all(&len.to_be_bytes()).await?;
    writer.write_all(&body).await?;
    writer.flush().await?;
    Ok(())
}

/// Read one frame of at most `max_len` bytes and decode it as a `T`.
pub async fn read_message<R, T>(reader: &mut R, max_len: usize) -> Result<T>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut len = [0; 4];
    reader
        .read_exact(&mut len)
        .await
        .context("the connection ended before a message")?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max_len {
        bail!("a message of {len} bytes is over the limit of {max_len}");
    }
    let mut body = vec![0; len];
    reader
        .read_exact(&mut body)
        .await
        .context("the connection ended inside a message")?;
    serde_json::from_slice(&body).context("a message that is not what was expected")
}
