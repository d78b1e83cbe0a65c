import { Observable, of, ReplaySubject, take, throwError } from 'rxjs';
import { IpczError } from '../errors';
import { Channel } from '../link/channel';
import type { NodeLink } from '../link/node-link';
import type { MessageOf } from '../wire/messages';
import type { NodeName } from '../wire/node-name';
import type { Node } from './node';
import { PROTOCOL_VERSION } from './node-connector';

interface PendingIntroduction {
  subject: ReplaySubject<NodeLink>;
  /** Brokers requested that have not replied yet. */
  outstanding: number;
}

/**
 * Introductions: a node that needs a link to another node asks its
 * broker, which creates a transport pair and a primary buffer and sends
 * one end to each node.
 */
export class Introductions {
  private static readonly byNode = new WeakMap<Node, Introductions>();
  private readonly pending = new Map<string, PendingIntroduction>();

  private constructor(private readonly node: Node) {}

  static of(node: Node): Introductions {
    let introductions = Introductions.byNode.get(node);
    if (introductions === undefined) {
      introductions = new Introductions(node);
      Introductions.byNode.set(node, introductions);
    }
    return introductions;
  }

  /**
   * Returns a link to `name`: the existing one at once, else one made by
   * an introduction. A non-broker asks its broker; a broker asks every
   * other broker it links to. Errors with `NOT_FOUND` when every node
   * asked refused, and `UNAVAILABLE` when there is nobody to ask.
   */
  establishLink(name: NodeName): Observable<NodeLink> {
    const existing = this.node.getLink(name);
    if (existing !== undefined) return of(existing);
    const key = name.toString();
    const waiting = this.pending.get(key);
    if (waiting !== undefined) return waiting.subject.pipe(take(1));

    const askers = this.node.isBroker
      ? this.node.otherBrokerLinks()
      : [this.node.brokerLink].filter((link) => link !== null);
    if (askers.length === 0) {
      return throwError(
        () =>
          new IpczError(
            'UNAVAILABLE',
            `no broker link to ask for an introduction to node ${name}`,
          ),
      );
    }
    // A ReplaySubject, because under the sync driver the reply arrives
    // inside send(), before the caller has subscribed.
    const entry = {
      subject: new ReplaySubject<NodeLink>(1),
      outstanding: 0,
    };
    this.pending.set(key, entry);
    for (const asker of askers) {
      entry.outstanding++;
      asker.send({ type: 'RequestIntroduction', name });
      asker.end$.subscribe(() => {
        if (this.pending.get(key) === entry) this.reject(name);
      });
    }
    return entry.subject.pipe(take(1));
  }

  /** Handles AcceptIntroduction from the broker. */
  accept(m: MessageOf<'AcceptIntroduction'>): string | null {
    if (m.transport?.kind !== 'transport' || m.memory?.kind !== 'memory') {
      return 'AcceptIntroduction is missing its transport or memory';
    }
    if (!m.name.isValid()) return 'AcceptIntroduction names an invalid node';
    if (this.node.getLink(m.name) !== undefined) {
      // Both sides requested at once and the broker introduced twice.
      this.node.driver.closeObject(m.transport);
      return null;
    }
    const channel = new Channel(this.node.driver, m.transport, false);
    const link = this.node.createLink({
      channel,
      memory: m.memory,
      initialize: false,
      remoteName: m.name,
      remoteType: m.remoteNodeType,
      remoteProtocolVersion: m.remoteProtocolVersion,
      side: m.linkSide,
    });
    this.node.addLink(link, {});
    channel.activate();
    const key = m.name.toString();
    const waiting = this.pending.get(key);
    this.pending.delete(key);
    waiting?.subject.next(link);
    waiting?.subject.complete();
    return null;
  }

  /**
   * Handles RejectIntroduction from one broker asked (or the loss of its
   * link): the request fails once every broker asked has refused.
   */
  reject(name: NodeName): string | null {
    const key = name.toString();
    const waiting = this.pending.get(key);
    if (waiting === undefined) return null;
    if (--waiting.outstanding > 0) return null;
    this.pending.delete(key);
    waiting.subject.error(
      new IpczError('NOT_FOUND', `no broker could introduce node ${name}`),
    );
    return null;
  }
}

/**
 * Introduces two nodes this broker links to: a new transport pair and a
 * new primary buffer, one end and one mapping for each.
 */
export function introduce(
  broker: Node,
  first: NodeLink,
  second: NodeLink,
): string | null {
  let memory;
  try {
    memory = broker.allocatePrimaryBuffer();
  } catch {
    first.send({ type: 'RejectIntroduction', name: second.remoteName });
    return null;
  }
  broker.initializeLinkMemory(memory);
  const [forFirst, forSecond] = broker.driver.createTransports();
  first.send({
    type: 'AcceptIntroduction',
    name: second.remoteName,
    linkSide: 'A',
    remoteNodeType: second.remoteType,
    remoteProtocolVersion: PROTOCOL_VERSION,
    transport: forFirst,
    memory: broker.driver.duplicateSharedMemory(memory),
  });
  second.send({
    type: 'AcceptIntroduction',
    name: first.remoteName,
    linkSide: 'B',
    remoteNodeType: first.remoteType,
    remoteProtocolVersion: PROTOCOL_VERSION,
    transport: forSecond,
    memory,
  });
  return null;
}
