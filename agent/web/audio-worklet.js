// Audio processors for the voice agent page, running on the audio rendering thread.
//
// `capture`: microphone → 16 kHz mono PCM16 frames of 32 ms, posted to the page.
// `playback`: reply PCM16 (24 kHz by default) → speaker, through a small jitter buffer that
// the page can flush at once when the user interrupts the reply.

const CAPTURE_RATE = 16000;
// 32 ms at 16 kHz: the frame size speech models expect.
const CAPTURE_FRAME = 512;
// Low-pass below the 8 kHz Nyquist frequency of 16 kHz audio, so that downsampling from the
// device rate (usually 48 kHz) does not fold high frequencies into the speech band.
const ANTI_ALIAS_HZ = 7000;
// Playback starts (and restarts after running dry) once this much audio is buffered: enough
// to ride out network jitter, short enough to keep replies snappy.
const JITTER_START_SECONDS = 0.1;
// Reply audio beyond this is dropped rather than buffered without bound.
const MAX_BUFFER_SECONDS = 60;
// How often playback progress is reported to the page.
const REPORT_SECONDS = 0.1;

// A second-order low-pass section (RBJ audio EQ cookbook).
class LowPass {
  constructor(cutoff, rate) {
    const w0 = (2 * Math.PI * Math.min(cutoff, rate * 0.45)) / rate;
    const alpha = Math.sin(w0) / (2 * Math.SQRT1_2);
    const cos = Math.cos(w0);
    const a0 = 1 + alpha;
    this.b0 = (1 - cos) / 2 / a0;
    this.b1 = (1 - cos) / a0;
    this.b2 = this.b0;
    this.a1 = (-2 * cos) / a0;
    this.a2 = (1 - alpha) / a0;
    this.x1 = this.x2 = this.y1 = this.y2 = 0;
  }

  step(x) {
    const y = this.b0 * x + this.b1 * this.x1 + this.b2 * this.x2 - this.a1 * this.y1 - this.a2 * this.y2;
    this.x2 = this.x1;
    this.x1 = x;
    this.y2 = this.y1;
    this.y1 = y;
    return y;
  }
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    // Input samples per output sample.
    this.step = sampleRate / CAPTURE_RATE;
    this.filters = this.step > 1 ? [new LowPass(ANTI_ALIAS_HZ, sampleRate), new LowPass(ANTI_ALIAS_HZ, sampleRate)] : [];
    // Position of the next output sample, in input samples from the start of the block.
    this.position = 0;
    this.previous = 0;
    this.frame = new Int16Array(CAPTURE_FRAME);
    this.filled = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const length = channels[0].length;
    for (let i = 0; i < length; i++) {
      // Downmix: the average of all channels.
      let x = 0;
      for (const channel of channels) x += channel[i];
      x /= channels.length;
      for (const filter of this.filters) x = filter.step(x);
      // Linear interpolation for every output sample that falls between the previous input
      // sample (i - 1) and this one (i).
      while (this.position <= i) {
        const fraction = this.position - (i - 1);
        this.emit(this.previous + (x - this.previous) * fraction);
        this.position += this.step;
      }
      this.previous = x;
    }
    this.position -= length;
    return true;
  }

  emit(sample) {
    const clamped = Math.max(-1, Math.min(1, sample));
    this.frame[this.filled++] = clamped < 0 ? clamped * 0x8000 : clamped * 0x7fff;
    if (this.filled === CAPTURE_FRAME) {
      let energy = 0;
      for (const s of this.frame) energy += s * s;
      const rms = Math.sqrt(energy / CAPTURE_FRAME);
      this.port.postMessage({ pcm: this.frame.buffer, rms }, [this.frame.buffer]);
      this.frame = new Int16Array(CAPTURE_FRAME);
      this.filled = 0;
    }
  }
}

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.setSourceRate(24000);
    this.chunks = [];
    this.chunk = null;
    this.index = 0;
    this.queued = 0;
    this.playing = false;
    // End of reply: play what is left even if it is less than the start threshold.
    this.draining = false;
    // Interpolation state: the two source samples around the read position.
    this.a = 0;
    this.b = 0;
    this.phase = 1;
    this.played = 0;
    this.dropped = 0;
    this.reported = 0;
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  setSourceRate(rate) {
    this.sourceRate = rate;
    this.step = rate / sampleRate;
    this.startAt = Math.round(rate * JITTER_START_SECONDS);
    this.maxQueued = rate * MAX_BUFFER_SECONDS;
  }

  onMessage(message) {
    switch (message.type) {
      case 'rate':
        this.setSourceRate(message.rate);
        break;
      case 'audio': {
        const pcm = new Int16Array(message.pcm);
        if (this.queued + pcm.length > this.maxQueued) {
          this.dropped += pcm.length;
          break;
        }
        const samples = new Float32Array(pcm.length);
        for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 0x8000;
        this.chunks.push(samples);
        this.queued += samples.length;
        this.draining = false;
        break;
      }
      case 'drain':
        this.draining = true;
        break;
      case 'flush': {
        const discarded = this.queued + (this.chunk ? this.chunk.length - this.index : 0);
        this.chunks = [];
        this.chunk = null;
        this.queued = 0;
        this.playing = false;
        this.draining = false;
        this.phase = 1;
        this.a = this.b = 0;
        this.port.postMessage({ type: 'flushed', discarded });
        break;
      }
    }
  }

  // The next source sample, or undefined when the buffer is empty.
  next() {
    while (!this.chunk || this.index >= this.chunk.length) {
      this.chunk = this.chunks.shift();
      this.index = 0;
      if (!this.chunk) return undefined;
      this.queued -= this.chunk.length;
    }
    this.played++;
    return this.chunk[this.index++];
  }

  buffered() {
    return this.queued + (this.chunk ? this.chunk.length - this.index : 0);
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    out.fill(0);
    if (!this.playing) {
      const buffered = this.buffered();
      if (buffered === 0 || (buffered < this.startAt && !this.draining)) return true;
      this.playing = true;
      this.phase = 1;
      this.b = 0;
    }
    for (let j = 0; j < out.length; j++) {
      while (this.phase >= 1) {
        const sample = this.next();
        if (sample === undefined) {
          // Ran dry: wait for the buffer to fill again.
          this.playing = false;
          this.report(true);
          return true;
        }
        this.a = this.b;
        this.b = sample;
        this.phase -= 1;
      }
      out[j] = this.a + (this.b - this.a) * this.phase;
      this.phase += this.step;
    }
    this.report(false);
    return true;
  }

  report(force) {
    if (!force && this.played - this.reported < this.sourceRate * REPORT_SECONDS) return;
    if (this.played === this.reported) return;
    this.reported = this.played;
    this.port.postMessage({ type: 'played', samples: this.played, dropped: this.dropped });
  }
}

registerProcessor('capture', CaptureProcessor);
registerProcessor('playback', PlaybackProcessor);
