//! The floor: a WebSocket server that sends `bidi_connection_start` and then echoes every
//! frame, with no session logic and no model. Its round trip is what the generator, the
//! kernel's loopback and one tungstenite hop cost; a relay can only add to it.

use std::net::SocketAddr;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Same per-connection read buffer as the agent uses (`READ_BUFFER_BYTES` in
/// agent/src/server/ws.rs), so that the floor's memory per session is comparable.
const READ_BUFFER: usize = 4 * 1024;

pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!(r#"{{"listening":"{}"}}"#, listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(echo(tcp));
    }
}

async fn echo(tcp: TcpStream) {
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let Ok(mut socket) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await else {
        return;
    };
    let start = r#"{"type":"bidi_connection_start","connection_id":"echo","model":"echo","input_sample_rate":16000,"output_sample_rate":16000}"#;
    if socket.send(Message::Text(start.into())).await.is_err() {
        return;
    }
    while let Some(Ok(message)) = socket.next().await {
        let reply = match message {
            Message::Binary(pcm) => Message::Binary(pcm),
            // Answer JSON audio the way a relay does, so the generator reads it as reply audio.
            Message::Text(text) => Message::Text(
                text.as_str()
                    .replacen("bidi_audio_input", "bidi_audio_stream", 1)
                    .into(),
            ),
            Message::Close(_) => break,
            _ => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}
