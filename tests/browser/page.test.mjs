// The agent's page in headless Chromium, with a fake microphone that speaks an espeak-ng WAV:
// it connects, the user's turn and the agent's reply show up as transcripts, and the reply is
// played. Screenshots and logs go to test-output/browser/.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { launchBrowser, log, openPage, outputDir, speechWav, startAgent, startDroppingRelay } from './support.mjs';

const QUESTION = 'Hello there. What are your opening hours on Sunday?';
// Long enough for the whole reply (about five seconds of audio) before the file loops.
const LONG_PAUSE_MS = 9000;
// Shorter than the reply: the looped question starts again while the agent is speaking.
const SHORT_PAUSE_MS = 2500;
const PHONE = { width: 320, height: 640 };
const DESKTOP = { width: 1024, height: 900 };

let agent;

before(async () => {
  agent = await startAgent();
});

after(async () => {
  await agent?.stop();
});

async function withPage(wav, viewport, body, url = agent.url) {
  const browser = await launchBrowser(wav);
  try {
    const opened = await openPage(browser, url, viewport);
    await body(opened);
    assert.deepEqual(opened.errors.map(String), [], 'no script errors on the page');
  } finally {
    await browser.close();
  }
}

// Waits until an element's attribute equals `expected` (a string) or reaches it (a number).
async function waitForAttribute(page, selector, attribute, expected, timeout, what) {
  try {
    await page.waitForFunction(
      ([sel, attr, want]) => {
        const value = document.querySelector(sel)?.getAttribute(attr);
        return typeof want === 'number' ? Number(value) >= want : value === want;
      },
      [selector, attribute, expected],
      { timeout },
    );
  } catch (error) {
    const transcript = await page.locator('#transcript').innerText().catch(() => '?');
    const status = await page.locator('#status').innerText().catch(() => '?');
    throw new Error(`${what} did not happen within ${timeout} ms (status: ${status}; transcript: ${transcript})`, { cause: error });
  }
}

test('a spoken question is transcribed and the spoken reply is played', { timeout: 90_000 }, async () => {
  const wav = speechWav('question.wav', QUESTION, LONG_PAUSE_MS);
  await withPage(wav, DESKTOP, async ({ page, response }) => {
    assert.equal(response.status(), 200);
    assert.match(response.headers()['content-security-policy'], /default-src 'none'/);

    // Keyboard only: from the token field, Tab reaches Connect and Enter presses it.
    const token = page.getByLabel('Access token');
    await token.focus();
    await page.keyboard.press('Tab');
    const connect = page.getByRole('button', { name: 'Connect' });
    assert.ok(await connect.evaluate((el) => el === document.activeElement), 'Tab moves focus to Connect');
    await page.keyboard.press('Enter');

    await waitForAttribute(page, '#status', 'data-state', 'connected', 15_000, 'connection');
    await page.getByText('Connected to simulated').waitFor({ timeout: 15_000 });
    assert.notEqual(await page.locator('#session').innerText(), '–', 'session id shown');

    const user = page.locator('#transcript li[data-role="user"]').first();
    await user.waitFor({ timeout: 20_000 });
    assert.match(await user.innerText(), /You: \(\d+\.\d seconds of speech\)/);

    const reply = page.locator('#transcript li[data-role="assistant"][data-final="true"]').first();
    await reply.waitFor({ timeout: 25_000 });
    assert.match(await reply.innerText(), /Agent: Hello! This is the simulated voice agent\. I heard \d+\.\d seconds of speech\./);
    assert.match(await reply.innerText(), /first audio after \d+ ms/);
    assert.equal(await reply.getAttribute('data-interrupted'), 'false');

    // At least a second of reply audio went through the playback buffer to the speaker.
    await waitForAttribute(page, '#played', 'data-samples', 24000, 15_000, 'reply playback');
    const ttfa = Number(await page.locator('#ttfa').getAttribute('data-ms'));
    assert.ok(ttfa > 300 && ttfa < 5000, `time to first audio ${ttfa} ms`);
    log('test', `time to first audio ${ttfa} ms, played ${await page.locator('#played').innerText()}`);

    await page.screenshot({ path: path.join(outputDir, 'conversation.png'), fullPage: true });

    // Readable on a phone: nothing wider than the screen.
    await page.setViewportSize(PHONE);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `page is ${overflow}px wider than a phone screen`);
    await page.screenshot({ path: path.join(outputDir, 'conversation-phone.png'), fullPage: true });

    await page.getByRole('button', { name: 'Disconnect' }).click();
    await waitForAttribute(page, '#status', 'data-state', 'idle', 5_000, 'disconnect');
  });
});

test('speaking over the reply interrupts it and flushes playback', { timeout: 90_000 }, async () => {
  const wav = speechWav('barge-in.wav', QUESTION, SHORT_PAUSE_MS);
  await withPage(wav, PHONE, async ({ page }) => {
    await page.getByRole('button', { name: 'Connect' }).click();
    await waitForAttribute(page, '#status', 'data-state', 'connected', 15_000, 'connection');

    // The playback worklet acknowledges each flush, so this proves the buffer was emptied.
    await waitForAttribute(page, '#interruptions', 'data-flushes', 1, 30_000, 'interruption');
    assert.ok(Number(await page.locator('#interruptions').getAttribute('data-count')) >= 1);
    const interrupted = page.locator('#transcript li[data-role="assistant"][data-interrupted="true"]').first();
    await interrupted.waitFor({ timeout: 10_000 });
    assert.match(await interrupted.innerText(), /interrupted/);
    assert.ok(Number(await page.locator('#played').getAttribute('data-samples')) > 0, 'some audio played before');
    await page.screenshot({ path: path.join(outputDir, 'interruption.png'), fullPage: true });
  });
});

test('a token travels as the browser bearer subprotocol pair', { timeout: 60_000 }, async () => {
  const wav = speechWav('question.wav', QUESTION, LONG_PAUSE_MS);
  // Characters whose base64 needs the URL-safe alphabet and padding.
  const token = 'tok?en>~';
  await withPage(wav, DESKTOP, async ({ page }) => {
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    const handshake = new Promise((resolve) => {
      cdp.on('Network.webSocketWillSendHandshakeRequest', (event) => resolve(event.request.headers));
    });
    await page.getByLabel('Access token').fill(token);
    await page.getByLabel('Access token').press('Enter');
    const headers = await handshake;
    const offered = headers['Sec-WebSocket-Protocol'] ?? headers['sec-websocket-protocol'];
    const encoded = Buffer.from(token).toString('base64url');
    assert.equal(offered, `base64UrlBearerAuthorization.${encoded}, base64UrlBearerAuthorization`);
    assert.doesNotMatch(encoded, /[+/=]/);
    // Whether the agent accepts it depends on its auth settings; either way the page settles.
    await page.waitForFunction(() => ['connected', 'failed'].includes(document.querySelector('#status').dataset.state), null, {
      timeout: 15_000,
    });
    log('test', `with a token the page ended ${await page.locator('#status').getAttribute('data-state')}: ${await page.locator('#notice').innerText()}`);
  });
});

test('a dropped connection is resumed and the conversation stays on screen', { timeout: 90_000 }, async () => {
  const wav = speechWav('question.wav', QUESTION, LONG_PAUSE_MS);
  // Cut once the first reply has been heard.
  const relay = await startDroppingRelay(agent.url, 12_000);
  try {
    await withPage(wav, DESKTOP, async ({ page }) => {
      await page.getByRole('button', { name: 'Connect' }).click();
      await waitForAttribute(page, '#status', 'data-state', 'connected', 15_000, 'connection');
      const firstSession = await page.locator('#session').innerText();
      const reply = page.locator('#transcript li[data-role="assistant"][data-final="true"]').first();
      await reply.waitFor({ timeout: 25_000 });
      const said = await reply.innerText();

      await page.getByText('Reconnected: the conversation continues.').waitFor({ timeout: 30_000 });
      await waitForAttribute(page, '#status', 'data-state', 'connected', 15_000, 'reconnection');
      assert.notEqual(await page.locator('#session').innerText(), firstSession, 'a new session');
      assert.equal(await reply.innerText(), said, 'the earlier transcript is still on screen');
      await page.screenshot({ path: path.join(outputDir, 'reconnected.png'), fullPage: true });
    }, relay.url);
  } finally {
    await relay.stop();
  }
});
