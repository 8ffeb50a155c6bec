// Pure unit tests (no database): the memory window of an http handler.
import assert from 'node:assert/strict';
import { SpillWindow } from '../../src/delivery/window.ts';

/** A promise of durability, as the record stage returns it, resolved by hand. */
function batch(): { durable: Promise<void>; commit(): Promise<void> } {
  let resolve!: () => void;
  const durable = new Promise<void>((r) => { resolve = r; });
  return { durable, commit: async () => { resolve(); await durable; await Promise.resolve(); } };
}
const committed = Promise.resolve();

describe('memory window (pure)', () => {
  it('spills past its size; then every new delivery of a spilled account follows it, others still fit', () => {
    const w = new SpillWindow(10);
    for (let i = 0; i < 9; i++) w.entered();
    assert.equal(w.mustSpill('a:1'), false);
    w.entered();
    assert.equal(w.mustSpill('a:1'), true);
    w.spill('a:1', batch().durable);
    assert.equal(w.spilled, true);
    for (let i = 0; i < 7; i++) w.finished(100 + i, committed);
    assert.equal(w.held, 3);
    assert.equal(w.mustSpill('a:1'), true, 'behind its spilled delivery');
    assert.equal(w.mustSpill('a:2'), false, 'a quiet account goes straight into memory');
    assert.equal(w.room, 5, 'pages fill four fifths of the window');
  });

  it('asks for a page when a delivery leaves memory, deliveries wait in the database and a third of it is free', () => {
    let asked = 0;
    const w = new SpillWindow(10, () => asked++);
    for (let i = 0; i < 10; i++) w.entered();
    w.finished(1, committed);
    assert.equal(asked, 0, 'nothing spilled');
    w.spill('a:1', committed);
    w.finished(2, committed);
    assert.equal(asked, 0, 'room 0');
    for (let i = 3; i <= 7; i++) w.finished(i, committed);
    assert.equal(asked, 3, 'room 3, 4 and 5 of 10');
  });

  it('at start any account may wait in the database: everything spills until the pages pass the start horizon', () => {
    const w = new SpillWindow(10);
    w.startSpilled();
    assert.equal(w.mustSpill('a:7'), true);
    w.spill('a:7', committed);
    w.pastStartHorizon();
    assert.equal(w.mustSpill('a:8'), false);
    assert.equal(w.mustSpill('a:7'), true, 'spilled since the start');
  });

  it('caught up only when every spill was committed before the page and none came after', async () => {
    const w = new SpillWindow(10);
    const a = batch();
    w.spill('a:1', a.durable);
    assert.equal(w.caughtUp(w.beginPage()), false, 'a spill not yet committed');
    await a.commit();
    const mark = w.beginPage();
    w.spill('a:2', committed);
    assert.equal(w.caughtUp(mark), false, 'a spill while the page was read');
    await Promise.resolve();
    assert.equal(w.caughtUp(w.beginPage()), true);
    assert.equal(w.spilled, false);
    assert.equal(w.mustSpill('a:1'), false, 'the spilled accounts are forgotten');
  });

  it('records of one batch share its promise: followed once, settled together', async () => {
    const w = new SpillWindow(10);
    const b = batch();
    for (let k = 0; k < 1000; k++) w.spill(`a:${k}`, b.durable);
    assert.equal(w.beginPage().allPersisted, false);
    await b.commit();
    assert.equal(w.beginPage().allPersisted, true);
  });

  it('past 100,000 spilled accounts every new delivery spills (memory stays bounded)', async () => {
    const w = new SpillWindow(10);
    for (let k = 0; k <= 100_000; k++) w.spill(`a:${k}`, committed);
    assert.equal(w.mustSpill('a:never-seen'), true);
    await Promise.resolve();
    assert.equal(w.caughtUp(w.beginPage()), true);
    assert.equal(w.mustSpill('a:never-seen'), false);
  });

  it('a delivery that finished is skipped by pages read before its final row was committed', async () => {
    const w = new SpillWindow(10);
    w.spill('a:1', committed);
    w.entered();
    const done = batch();
    w.finished(2, done.durable);
    w.beginPage();
    assert.equal(w.recentlyFinished(2), true);
    await done.commit();
    assert.equal(w.recentlyFinished(2), true, 'the page being read may predate the commit');
    w.beginPage();
    assert.equal(w.recentlyFinished(2), false, 'a page read after the commit sees it finished');
  });

  it('remembers finished deliveries in bounded memory when no page is read (a replay is handed out first), never during a page', async () => {
    const w = new SpillWindow(10);
    w.startSpilled();
    for (let round = 0; round < 100; round++) {
      for (let i = 0; i < 1000; i++) { w.entered(); w.finished(round * 1000 + i, committed); }
      await new Promise((r) => setImmediate(r));   // their final rows commit
    }
    let remembered = 0;
    for (let i = 0; i < 100_000; i++) if (w.recentlyFinished(i)) remembered++;
    assert.ok(remembered <= 4096, `${remembered} finished deliveries remembered without a page`);
    // While a page is read, nothing it may show is forgotten.
    w.beginPage();
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 1000; i++) { w.entered(); w.finished(200_000 + round * 1000 + i, committed); }
      await new Promise((r) => setImmediate(r));
    }
    let during = 0;
    for (let i = 200_000; i < 205_000; i++) if (w.recentlyFinished(i)) during++;
    assert.equal(during, 5000);
    w.endPage();
  });
});
