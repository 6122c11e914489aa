// The voice agent page: microphone → /ws as 16 kHz PCM16 binary frames; reply audio, transcripts
// and events ← /ws. The wire protocol is described in docs/protocol.md.

// Mirrors the agent's turn detector: a 32 ms frame this loud (of 32768) counts as speech.
const SPEECH_RMS = 500;
// Frames are dropped, not queued, once this much is waiting to be sent (about 2 s of audio):
// late microphone audio is worse than lost audio in a conversation.
const MAX_SEND_BACKLOG_BYTES = 64 * 1024;
// The convention browsers use to carry a bearer token, since they cannot set headers on a
// WebSocket handshake: `base64UrlBearerAuthorization.<base64url(token)>` plus the bare marker.
const TOKEN_PROTOCOL = 'base64UrlBearerAuthorization';

const $ = (id) => document.getElementById(id);
const ui = {
  status: $('status'),
  notice: $('notice'),
  form: $('connect-form'),
  token: $('token'),
  connect: $('connect'),
  mute: $('mute'),
  level: $('mic-level'),
  transcript: $('transcript'),
  textForm: $('text-form'),
  message: $('message'),
  send: $('send'),
  ttfa: $('ttfa'),
  played: $('played'),
  interruptions: $('interruptions'),
  session: $('session'),
};

// The live session, or null. Every async step checks it is still current, so a Disconnect
// during Connect leaves nothing behind.
let session = null;

ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (session) disconnect('Disconnected');
  else connect();
});

ui.mute.addEventListener('click', () => {
  if (!session) return;
  session.muted = !session.muted;
  ui.mute.setAttribute('aria-pressed', String(session.muted));
  if (session.muted) ui.level.value = 0;
});

ui.textForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = ui.message.value.trim();
  if (!session || !text || session.ws?.readyState !== WebSocket.OPEN) return;
  session.ws.send(JSON.stringify({ type: 'bidi_text_input', text, role: 'user' }));
  session.lastInputAt = performance.now();
  ui.message.value = '';
});

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = false;
}

function clearNotice() {
  ui.notice.textContent = '';
  ui.notice.hidden = true;
}

// The WebSocket next to this page: `/ws` when the page is `/`, on the same host and scheme
// (wss:// behind an HTTPS ingress).
function agentUrl(resumeToken) {
  const url = new URL('ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  url.search = '?audio_output=binary';
  if (resumeToken) url.searchParams.set('resume', resumeToken);
  url.hash = '';
  return url.href;
}

// A dropped connection (or an agent restarting: close code 1012) is resumed with the
// conversation's token, after 0.5 s, 1 s, 2 s, 4 s, 8 s; the transcript stays on screen.
const RECONNECT_DELAYS_MS = [500, 1000, 2000, 4000, 8000];
const RESUMABLE_CLOSE_CODES = new Set([1001, 1006, 1011, 1012]);

function base64Url(text) {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

async function connect() {
  clearNotice();
  resetStats();
  setStatus('connecting', 'Connecting…');
  ui.connect.textContent = 'Disconnect';
  // Created inside the click (or key press) so that the browser lets it play sound.
  const s = {
    ctx: new AudioContext({ latencyHint: 'interactive' }),
    ws: null,
    opened: false,
    muted: false,
    outputRate: 24000,
    response: null,
    entry: null,
    lastInputAt: -Infinity,
    lastFirstAudioAt: -Infinity,
    closeReason: null,
    droppedFrames: 0,
    resumeToken: null,
    reconnects: 0,
  };
  session = s;
  // Some browsers create contexts suspended even inside a gesture.
  s.ctx.resume().catch(() => {});
  try {
    await s.ctx.audioWorklet.addModule(new URL('assets/audio-worklet.js', location.href));
  } catch (error) {
    fail(s, `This browser cannot run the audio processor (${error.message}).`);
    return;
  }
  if (session !== s) return;
  s.playback = new AudioWorkletNode(s.ctx, 'playback', { numberOfInputs: 0, outputChannelCount: [1] });
  s.playback.connect(s.ctx.destination);
  s.playback.port.onmessage = ({ data }) => onPlayback(s, data);
  await startMicrophone(s);
  if (session !== s) return;
  openSocket(s);
}

async function startMicrophone(s) {
  if (!navigator.mediaDevices?.getUserMedia) {
    showNotice('The microphone needs a secure page (https:// or localhost). You can still type messages.');
    return;
  }
  try {
    s.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (error) {
    showNotice(`Microphone unavailable (${error.name}). You can still type messages.`);
    return;
  }
  if (session !== s) {
    stopMicrophone(s);
    return;
  }
  s.capture = new AudioWorkletNode(s.ctx, 'capture', { numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1] });
  s.capture.port.onmessage = ({ data }) => onCaptured(s, data);
  s.ctx.createMediaStreamSource(s.stream).connect(s.capture);
  // Keeps the capture node in the rendering graph without making it audible.
  const silent = s.ctx.createGain();
  silent.gain.value = 0;
  s.capture.connect(silent).connect(s.ctx.destination);
  ui.mute.disabled = false;
}

function openSocket(s, resumeToken) {
  const token = ui.token.value.trim();
  const protocols = token ? [`${TOKEN_PROTOCOL}.${base64Url(token)}`, TOKEN_PROTOCOL] : [];
  try {
    s.ws = new WebSocket(agentUrl(resumeToken), protocols);
  } catch (error) {
    fail(s, `Cannot connect: ${error.message}`);
    return;
  }
  s.ws.binaryType = 'arraybuffer';
  s.ws.onopen = () => {
    s.opened = true;
    setStatus('connected', 'Connected');
  };
  const resuming = Boolean(resumeToken);
  s.ws.onmessage = ({ data }) => {
    if (session !== s) return;
    if (data instanceof ArrayBuffer) onReplyAudio(s, data);
    else onEvent(s, data);
  };
  s.ws.onclose = (event) => {
    if (session !== s) return;
    if (s.resumeToken && s.reconnects < RECONNECT_DELAYS_MS.length && (resuming || (s.opened && RESUMABLE_CLOSE_CODES.has(event.code)))) {
      // Keep the microphone, the speaker and the transcript: only the connection is new.
      const delay = RECONNECT_DELAYS_MS[s.reconnects++];
      s.opened = false;
      s.playback.port.postMessage({ type: 'flush' });
      setStatus('connecting', `Connection lost (${event.code}); reconnecting in ${delay / 1000} s…`);
      setTimeout(() => {
        if (session === s) openSocket(s, s.resumeToken);
      }, delay);
      return;
    }
    if (!s.opened) {
      fail(s, 'Could not connect. The agent is unreachable, or it refused the connection (a wrong token and a full agent look the same to a browser; see the agent logs).');
      return;
    }
    const why = [event.code, event.reason, s.closeReason && `(${s.closeReason})`].filter(Boolean).join(' ');
    teardown(s);
    setStatus('closed', `Disconnected by the agent: ${why}`);
  };
}

function onCaptured(s, { pcm, rms }) {
  const now = performance.now();
  if (!s.muted) {
    ui.level.value = Math.min(1, rms / 6000);
    if (rms >= SPEECH_RMS) s.lastInputAt = now;
  }
  const ws = s.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  if (ws.bufferedAmount > MAX_SEND_BACKLOG_BYTES) {
    s.droppedFrames++;
    return;
  }
  // Muted still sends silence: the agent expects a continuous stream while the mic is open.
  ws.send(s.muted ? new ArrayBuffer(pcm.byteLength) : pcm);
}

function onEvent(s, text) {
  let event;
  try {
    event = JSON.parse(text);
  } catch {
    return;
  }
  switch (event.type) {
    case 'bidi_connection_start':
      s.resumeToken = event.resume_token || null;
      if (event.resumed) {
        s.reconnects = 0;
        addNote(s, 'Reconnected: the conversation continues.');
      }
      s.outputRate = event.output_sample_rate || 24000;
      s.playback.port.postMessage({ type: 'rate', rate: s.outputRate });
      setStatus('connected', `Connected to ${event.model}`);
      ui.session.textContent = event.connection_id;
      ui.message.disabled = false;
      ui.send.disabled = false;
      break;
    case 'bidi_response_start':
      s.response = { id: event.response_id, firstAudioMs: null, interrupted: false };
      break;
    case 'bidi_audio_stream':
      onReplyAudio(s, decodeBase64(event.audio));
      break;
    case 'bidi_transcript_stream':
      onTranscript(s, event.role, event.text ?? event.delta?.text ?? '', event.is_final !== false);
      break;
    case 'bidi_interruption':
      s.playback.port.postMessage({ type: 'flush' });
      if (s.response) s.response.interrupted = true;
      bump(ui.interruptions, 'count');
      ui.interruptions.textContent = ui.interruptions.dataset.count;
      renderCurrent(s);
      break;
    case 'bidi_response_complete':
      s.playback.port.postMessage({ type: 'drain' });
      if (event.stop_reason === 'interrupted' && s.response) s.response.interrupted = true;
      renderCurrent(s);
      s.response = null;
      break;
    case 'tool_use_stream':
      addNote(s, `Tool call: ${event.current_tool_use?.name ?? 'unknown'}`);
      break;
    case 'tool_result':
      addNote(s, `Tool ${event.tool_result?.name ?? ''} returned (${event.tool_result?.status ?? 'unknown'})`);
      break;
    case 'bidi_connection_restart':
      addNote(s, `The agent renewed its model stream (${event.reason}); the conversation continues.`);
      break;
    case 'bidi_connection_close':
      s.closeReason = event.reason;
      // The agent is going away but hands the conversation over: resume with this token.
      if (event.resume_token) s.resumeToken = event.resume_token;
      break;
    case 'bidi_error':
      showNotice(`The agent reported an error: ${event.message} (${event.code})`);
      break;
  }
}

function onReplyAudio(s, buffer) {
  if (!s.response) s.response = { id: null, firstAudioMs: null, interrupted: false };
  const response = s.response;
  if (response.firstAudioMs === null) {
    const now = performance.now();
    // Only a reply to new input has a meaningful delay.
    if (s.lastInputAt > s.lastFirstAudioAt) {
      response.firstAudioMs = Math.round(now - s.lastInputAt);
      ui.ttfa.dataset.ms = String(response.firstAudioMs);
      ui.ttfa.textContent = `${response.firstAudioMs} ms`;
    } else {
      response.firstAudioMs = -1;
    }
    s.lastFirstAudioAt = now;
    renderCurrent(s);
  }
  s.playback.port.postMessage({ type: 'audio', pcm: buffer }, [buffer]);
}

function onPlayback(s, message) {
  if (session !== s) return;
  if (message.type === 'played') {
    ui.played.dataset.samples = String(message.samples);
    ui.played.textContent = `${(message.samples / s.outputRate).toFixed(1)} s`;
  } else if (message.type === 'flushed') {
    bump(ui.interruptions, 'flushes');
  }
}

// Consecutive transcripts of one speaker (one reply, for the agent) share an entry: final
// parts accumulate, a non-final part shows until its final version replaces it.
function onTranscript(s, role, text, isFinal) {
  const speaker = role === 'user' ? 'user' : 'assistant';
  const response = speaker === 'assistant' ? s.response : null;
  let entry = s.entry;
  if (!entry || entry.role !== speaker || (response && entry.response !== response)) {
    entry = newEntry(speaker, speaker === 'user' ? 'You' : 'Agent');
    entry.response = response;
    s.entry = entry;
  }
  if (isFinal) {
    entry.finals.push(text);
    entry.pending = '';
  } else {
    entry.pending = text;
  }
  render(entry);
}

function newEntry(role, label) {
  const li = document.createElement('li');
  li.className = `turn ${role}`;
  li.dataset.role = role;
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = `${label}: `;
  const text = document.createElement('span');
  text.className = 'text';
  const meta = document.createElement('span');
  meta.className = 'meta';
  li.append(who, text, meta);
  ui.transcript.append(li);
  li.scrollIntoView({ block: 'nearest' });
  return { role, li, text, meta, finals: [], pending: '', response: null };
}

function render(entry) {
  entry.text.textContent = [...entry.finals, entry.pending].filter(Boolean).join(' ');
  entry.li.dataset.final = String(entry.pending === '' && entry.finals.length > 0);
  const response = entry.response;
  if (!response) return;
  const meta = [];
  if (response.firstAudioMs !== null && response.firstAudioMs >= 0) meta.push(`first audio after ${response.firstAudioMs} ms`);
  if (response.interrupted) meta.push('interrupted');
  entry.meta.textContent = meta.join(' · ');
  entry.li.dataset.interrupted = String(response.interrupted);
}

function renderCurrent(s) {
  if (s.entry && s.entry.response === s.response && s.response) render(s.entry);
}

function addNote(s, text) {
  const li = document.createElement('li');
  li.className = 'turn note';
  li.textContent = text;
  ui.transcript.append(li);
  s.entry = null;
}

function bump(element, key) {
  element.dataset[key] = String(Number(element.dataset[key] || 0) + 1);
}

function decodeBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

function resetStats() {
  ui.ttfa.dataset.ms = '';
  ui.ttfa.textContent = '–';
  ui.played.dataset.samples = '0';
  ui.played.textContent = '0.0 s';
  ui.interruptions.dataset.count = '0';
  ui.interruptions.dataset.flushes = '0';
  ui.interruptions.textContent = '0';
  ui.session.textContent = '–';
}

function disconnect(message) {
  const s = session;
  if (!s) return;
  if (s.ws && s.ws.readyState <= WebSocket.OPEN) s.ws.close(1000, 'user disconnected');
  teardown(s);
  setStatus('idle', message);
}

function fail(s, message) {
  const current = session === s;
  teardown(s);
  if (!current) return;
  setStatus('failed', 'Not connected');
  showNotice(message);
}

function stopMicrophone(s) {
  for (const track of s.stream?.getTracks() ?? []) track.stop();
}

function teardown(s) {
  stopMicrophone(s);
  s.ctx.close().catch(() => {});
  if (s.droppedFrames > 0) console.warn(`dropped ${s.droppedFrames} microphone frames: the network could not keep up`);
  // A newer session owns the controls.
  if (session !== s) return;
  session = null;
  ui.connect.textContent = 'Connect';
  ui.mute.disabled = true;
  ui.mute.setAttribute('aria-pressed', 'false');
  ui.level.value = 0;
  ui.message.disabled = true;
  ui.send.disabled = true;
}
