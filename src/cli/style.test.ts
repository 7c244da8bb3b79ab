import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { colourEnabled, style, visibleLength } from './style.js';

describe('terminal colours', () => {
  it('only on a terminal, never with NO_COLOR or TERM=dumb, forced by FORCE_COLOR', () => {
    assert.equal(colourEnabled({ isTTY: true }, {}), true);
    assert.equal(colourEnabled({ isTTY: false }, {}), false);
    assert.equal(colourEnabled({}, {}), false);
    assert.equal(colourEnabled({ isTTY: true }, { NO_COLOR: '1' }), false);
    assert.equal(colourEnabled({ isTTY: true }, { NO_COLOR: '' }), true, 'an empty NO_COLOR is unset (no-color.org)');
    assert.equal(colourEnabled({ isTTY: true }, { TERM: 'dumb' }), false);
    assert.equal(colourEnabled({ isTTY: false }, { FORCE_COLOR: '1' }), true);
    assert.equal(colourEnabled({ isTTY: true }, { FORCE_COLOR: '0' }), true, 'FORCE_COLOR=0 forces nothing');
    assert.equal(colourEnabled({ isTTY: false }, { FORCE_COLOR: '1', NO_COLOR: '1' }), false, 'NO_COLOR wins');
  });

  it('styles are plain text when off; visible length ignores the codes', () => {
    assert.equal(style({ isTTY: false }, {}).red('x'), 'x');
    const on = style({ isTTY: true }, {}).green('ready');
    assert.equal(on, '\x1b[32mready\x1b[39m');
    assert.equal(visibleLength(on), 5);
  });
});
