// Pure unit tests (no database): which events keep their order with each other.
import assert from 'node:assert/strict';
import { accountOf, orderKey } from '../../src/delivery/item.ts';

const ev = (variables: Record<string, unknown>, i_event = 7) => ({ i_event, event_type: 'X', variables, source_i_event: null });

describe('unit: order key', function () {
  it('the account first, then the customer, the product, the owner, else the event itself', () => {
    assert.equal(orderKey(ev({ i_account: 5, i_customer: 2, i_product: 1 })), 'a:5');
    assert.equal(orderKey(ev({ i_customer: 2, i_product: 1 })), 'c:2');
    assert.equal(orderKey(ev({ i_product: 1 })), 'p:1');
    assert.equal(orderKey(ev({ owner_type: 'customer', owner_id: 9 })), 'c:9');
    assert.equal(orderKey(ev({ owner_type: 'product', owner_id: 9 })), 'p:9');
    assert.equal(orderKey(ev({}, 42)), 'e:42');
  });

  it('null counts as absent; the account of an event is a number or null', () => {
    assert.equal(orderKey(ev({ i_account: null, i_customer: 3 })), 'c:3');
    assert.equal(accountOf(ev({ i_account: 5 })), 5);
    assert.equal(accountOf(ev({ i_account: '5' })), null);
    assert.equal(accountOf(ev({})), null);
  });
});
