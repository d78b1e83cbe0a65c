import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  createNode,
  drivers,
  type Node,
  type Portal,
} from '../../src/index';
import { nextParcel, until } from '../support/wait';

/** A deterministic PRNG (mulberry32), seeded so a failure can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Client {
  node: Node;
  toBroker: Portal;
  fromBroker: Portal;
}

/** Tracks one route: what each end sent and received, in order. */
class RouteCheck {
  sentByAnchor = 0;
  sentByMover = 0;
  receivedAtAnchor = 0;
  receivedAtMover = 0;

  constructor(
    readonly name: string,
    readonly anchor: Portal,
    public mover: Portal,
  ) {}

  exchange(): void {
    this.anchor.put(`${this.name} a${this.sentByAnchor++}`);
    this.mover.put(`${this.name} m${this.sentByMover++}`);
    this.drain();
  }

  drain(): void {
    while (this.anchor.status().localParcels > 0) {
      const text = this.anchor.get().text();
      assert.is(text, `${this.name} m${this.receivedAtAnchor++}`);
    }
    while (this.mover.status().localParcels > 0) {
      const text = this.mover.get().text();
      assert.is(text, `${this.name} a${this.receivedAtMover++}`);
    }
  }

  get settled(): boolean {
    this.drain();
    return (
      this.receivedAtAnchor === this.sentByMover &&
      this.receivedAtMover === this.sentByAnchor
    );
  }
}

for (const mode of ['sync', 'async'] as const) {
  test(`portals moved at random among four nodes (${mode})`, async () => {
    const seed = Number(process.env.STRESS_SEED ?? 4242);
    const next = random(seed);
    const driver = mode === 'sync' ? drivers.sync() : drivers.async();
    const broker = createNode({ driver, broker: true, label: 'A' });
    const clients: Client[] = ['B', 'C', 'D'].map((label) => {
      const node = createNode({ driver, label });
      const [t0, t1] = driver.createTransports();
      const [fromBroker] = broker.connect(t0, { portals: 1 });
      const [toBroker] = node.connect(t1, { portals: 1, toBroker: true });
      return { node, toBroker, fromBroker };
    });
    const nodes = [broker, ...clients.map((c) => c.node)];

    const routes: { check: RouteCheck; holder: number }[] = [];
    for (let r = 0; r < 2; r++) {
      const [anchor, mover] = clients[r].node.openPortals();
      routes.push({ check: new RouteCheck(`r${r}`, anchor, mover), holder: r });
    }

    for (let step = 0; step < 60; step++) {
      for (const route of routes) {
        for (let i = 0; i < 5; i++) route.check.exchange();
      }
      const route = routes[Math.floor(next() * routes.length)];
      const from = route.holder;
      const to = (from + 1 + Math.floor(next() * 2)) % clients.length;
      clients[from].toBroker.put(`move ${step}`, [route.check.mover]);
      const atBroker = await nextParcel(clients[from].fromBroker, 'at A');
      assert.is(atBroker.text(), `move ${step}`, `seed ${seed}`);
      clients[to].fromBroker.put(`move ${step}`, [atBroker.handles[0]]);
      const arrived = await nextParcel(clients[to].toBroker, 'at target');
      route.check.mover = arrived.handles[0] as Portal;
      route.holder = to;
      if (mode === 'async' && step % 10 === 0) {
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
    }

    for (const { check } of routes) {
      await until(() => check.settled, `route ${check.name} to settle`);
    }
    await until(
      () => nodes.every((node) => node.stats().proxies === 0),
      `proxies to go (seed ${seed}): ` +
        nodes.map((n) => `${n.label}=${n.stats().proxies}`).join(' '),
    );
    for (const node of nodes) node.close();
  });
}

test.run();
