// Helpers for the browser test: the real agent binary on 127.0.0.1, spoken WAV files from
// espeak-ng, and headless Debian Chromium with a fake microphone.

import { execFileSync, spawn } from 'node:child_process';
import { appendFileSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { createServer, connect as tcpConnect } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '../..');
export const outputDir = path.join(repoRoot, 'test-output', 'browser');
mkdirSync(outputDir, { recursive: true });

const targetDir = process.env.CARGO_TARGET_DIR ?? path.join(homedir(), '.cache', 'voice-agents', 'target');
const agentBinary = process.env.VOICE_AGENT_BIN ?? path.join(targetDir, 'debug', 'voice-agent');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const logFile = path.join(outputDir, 'test.log');

// Run the exit handlers (which stop the agent and the browser) when the run is cut short.
process.once('SIGTERM', () => process.exit(143));
process.once('SIGINT', () => process.exit(130));

/** Appends a line to test-output/browser/test.log. */
export function log(source, line) {
  appendFileSync(logFile, `${new Date().toISOString()} [${source}] ${line}\n`);
}

/** Starts `voice-agent` on a free loopback port; resolves once it listens. */
export function startAgent(extraArgs = []) {
  const child = spawn(
    agentBinary,
    ['--listen', '127.0.0.1:0', '--log-format', 'json', '--drain-timeout', '1s', ...extraArgs],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const stop = () => new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const force = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    child.kill('SIGTERM');
  });
  // Never leave the agent behind, even when the test runner is interrupted.
  process.once('exit', () => child.kill('SIGKILL'));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${agentBinary} did not start listening within 20 s (see ${logFile})`));
    }, 20_000);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${agentBinary}: ${error.message}; build it with cargo build -p voice-agent`));
    });
    createInterface({ input: child.stderr }).on('line', (line) => {
      log('agent', line);
      let entry;
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if (entry.message === 'voice agent listening') {
        clearTimeout(timer);
        resolve({ url: `http://${entry.address}`, stop });
      }
    });
  });
}

/**
 * Writes a 16-bit WAV of espeak-ng saying `text`, followed by `pauseMs` of silence (Chromium
 * loops the fake microphone file, so the pause decides when the next turn starts).
 */
export function speechWav(name, text, pauseMs) {
  const file = path.join(outputDir, name);
  const ssml = `<speak>${text}<break time="${pauseMs}ms"/></speak>`;
  execFileSync('espeak-ng', ['-m', '-s', '160', '-w', file, ssml]);
  return file;
}

/** Headless Chromium whose microphone plays `wavFile` in a loop. */
export async function launchBrowser(wavFile) {
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    timeout: 30_000,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${wavFile}`,
    ],
  });
}

/** A new page on the agent, with its console and errors copied to the log. */
export async function openPage(browser, agentUrl, viewport) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (message) => log('console', `${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => {
    errors.push(error);
    log('pageerror', error.stack ?? String(error));
  });
  const response = await page.goto(`${agentUrl}/`);
  return { page, response, errors };
}

/**
 * A TCP relay in front of the agent (`target`, its http:// URL) that cuts the first WebSocket
 * connection through it `cutAfterMs` after it opened, as a dropped network would (no close
 * frame); everything else passes. Resolves to the relay's http:// URL and a stop function.
 */
export function startDroppingRelay(target, cutAfterMs) {
  const upstream = new URL(target);
  let cut = false;
  const server = createServer((client) => {
    const agent = tcpConnect(Number(upstream.port), upstream.hostname);
    client.once('data', (first) => {
      agent.write(first);
      client.pipe(agent);
      agent.pipe(client);
      if (!cut && first.toString('latin1').startsWith('GET /ws')) {
        cut = true;
        setTimeout(() => {
          log('relay', 'cutting the WebSocket connection');
          client.resetAndDestroy();
          agent.resetAndDestroy();
        }, cutAfterMs);
      }
    });
    const close = () => {
      client.destroy();
      agent.destroy();
    };
    client.on('error', close);
    agent.on('error', close);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({ url: `http://127.0.0.1:${port}`, stop: () => new Promise((done) => server.close(() => done())) });
    });
  });
}
