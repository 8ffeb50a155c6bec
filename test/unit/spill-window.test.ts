// Pure unit tests (no database): the memory window of an http handler.
import assert from 'node:assert/strict';
import type { Item } from '../../src/delivery/item.ts';
import { SpillWindow } from '../../src/delivery/window.ts';

let next = 1;
function item(key: string): Item {
  const i = next++;
  return {
    event: { i_event: i, event_type: 'Account/Blocked', variables: { i_event: i }, source_i_event: null },
    handler: 'EventSender', orderKey: key, iAccount: null, commitLsn: null, committedAt: null,
    attempts: 0, urlsDone: 0, firstAttemptAt: null, nextAttemptAt: null, persisted: false,
  };
}

describe('memory window (pure)', () => {
  it('spills past its size; then every new delivery of a spilled account follows it, others still fit', () => {
    const w = new SpillWindow(10);
    assert.equal(w.mustSpill('a:1', 9), false);
    assert.equal(w.mustSpill('a:1', 10), true);
    w.spill(item('a:1'));
    assert.equal(w.spilled, true);
    assert.equal(w.mustSpill('a:1', 3), true, 'behind its spilled delivery');
    assert.equal(w.mustSpill('a:2', 3), false, 'a quiet account goes straight into memory');
    assert.equal(w.room(3), 5, 'pages fill four fifths of the window');
    assert.equal(w.room(9), 0);
  });

  it('at start any account may wait in the database: everything spills until the pages pass the start horizon', () => {
    const w = new SpillWindow(10);
    w.startSpilled();
    assert.equal(w.mustSpill('a:7', 0), true);
    w.spill(item('a:7'));
    w.pastStartHorizon();
    assert.equal(w.mustSpill('a:8', 0), false);
    assert.equal(w.mustSpill('a:7', 0), true, 'spilled since the start');
  });

  it('caught up only when every spill was committed before the page and none came after', () => {
    const w = new SpillWindow(10);
    const a = item('a:1');
    w.spill(a);
    assert.equal(w.caughtUp(w.mark()), false, 'a spill not yet committed');
    a.persisted = true;
    const mark = w.mark();
    w.spill(Object.assign(item('a:2'), { persisted: true }));
    assert.equal(w.caughtUp(mark), false, 'a spill while the page was read');
    assert.equal(w.caughtUp(w.mark()), true);
    assert.equal(w.spilled, false);
    assert.equal(w.mustSpill('a:1', 0), false, 'the spilled accounts are forgotten');
  });

  it('past 100,000 spilled accounts every new delivery spills (memory stays bounded)', () => {
    const w = new SpillWindow(10);
    for (let k = 0; k <= 100_000; k++) w.spill(Object.assign(item(`a:${k}`), { persisted: true }));
    assert.equal(w.mustSpill('a:never-seen', 0), true);
    assert.equal(w.caughtUp(w.mark()), true);
    assert.equal(w.mustSpill('a:never-seen', 0), false);
  });

  it('a delivery that finished is skipped by pages read before its final row was committed', () => {
    const w = new SpillWindow(10);
    w.spill(Object.assign(item('a:1'), { persisted: true }));
    const done = item('a:2');
    w.finished(done);
    w.beginPage();
    assert.equal(w.recentlyFinished(done.event.i_event), true);
    done.persisted = true;
    assert.equal(w.recentlyFinished(done.event.i_event), true, 'the page being read may predate the commit');
    w.beginPage();
    assert.equal(w.recentlyFinished(done.event.i_event), false, 'a page read after the commit sees it finished');
  });

  it('remembers finished deliveries in bounded memory when no page is read (a replay is handed out first), never during a page', () => {
    const w = new SpillWindow(10);
    w.startSpilled();
    const all: Item[] = [];
    for (let i = 0; i < 100_000; i++) {
      const done = item(`a:${i}`);
      all.push(done);
      w.finished(done);
      done.persisted = true;   // its final row committed
    }
    const remembered = all.filter((d) => w.recentlyFinished(d.event.i_event)).length;
    assert.ok(remembered <= 2048, `${remembered} finished deliveries remembered without a page`);
    // While a page is read, nothing it may show is forgotten.
    w.beginPage();
    const during: Item[] = [];
    for (let i = 0; i < 5000; i++) {
      const d = item(`b:${i}`);
      during.push(d);
      w.finished(d);
      d.persisted = true;
    }
    assert.equal(during.filter((d) => w.recentlyFinished(d.event.i_event)).length, 5000);
    w.endPage();
  });
});
