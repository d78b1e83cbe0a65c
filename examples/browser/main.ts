/**
 * The browser example's page: a broker node starts a producer worker and
 * a sandboxed consumer worker, moves a portal from the producer through
 * the page to the consumer, and shows the `stats()` of all three nodes as
 * parcels flow. The table updates live from the workers' reports.
 */
import { interval, merge } from 'rxjs';
import {
  createNode,
  createWebWorkerDriver,
  startWebNodeWorker,
  type NodeStats,
} from '../../src/web/index';

interface WorkerReport {
  role: string;
  sent: number;
  received: number;
  lastText: string;
  sharedCount: number | null;
  stats: NodeStats;
}

const WORKER_URL = '/dist/browser-pages/example/worker.js';
/** Time between two parcels from the producer, in ms. */
const PRODUCER_INTERVAL_MS = 40;
/** Time between two refreshes of the page's own stats, in ms. */
const REFRESH_INTERVAL_MS = 250;
const STAT_NAMES: (keyof NodeStats)[] = [
  'links',
  'routers',
  'proxies',
  'memoryRequestsSent',
  'memoryRequestsServed',
  'directAllocations',
];

const status = document.querySelector('#status')!;
const table = document.querySelector('#stats tbody')!;
const rows = new Map<string, HTMLTableRowElement>();

function showError(error: unknown): void {
  status.textContent = `failed: ${String(error)}`;
}

function renderRow(name: string, cells: (string | number | null)[]): void {
  let row = rows.get(name);
  if (row === undefined) {
    row = document.createElement('tr');
    rows.set(name, row);
    table.append(row);
  }
  row.replaceChildren(
    ...[name, ...cells].map((cell) => {
      const td = document.createElement('td');
      td.textContent = cell === null ? '–' : String(cell);
      return td;
    }),
  );
}

function renderStats(
  name: string,
  stats: NodeStats,
  report?: WorkerReport,
): void {
  renderRow(name, [
    ...STAT_NAMES.map((stat) => stats[stat]),
    report?.sent ?? null,
    report?.received ?? null,
    report?.sharedCount ?? null,
    report?.lastText ?? null,
  ]);
}

function main(): void {
  const broker = createNode({
    driver: createWebWorkerDriver(),
    broker: true,
    label: 'page',
  });
  const producer = startWebNodeWorker(broker, WORKER_URL, {
    label: 'producer',
    workerData: { role: 'producer', intervalMs: PRODUCER_INTERVAL_MS },
  });
  const consumer = startWebNodeWorker(broker, WORKER_URL, {
    label: 'consumer',
    canAllocate: false,
    allocationDelegate: true,
    workerData: { role: 'consumer' },
  });
  producer.started.catch(showError);
  consumer.started.catch(showError);
  const consumerControl = consumer.portals[0]!;

  // The only parcel with a handle carries the producer's end of the
  // route, which the page forwards to the consumer. The page's router
  // for it is a proxy until the route reduces.
  const fromWorkers = merge(
    producer.portals[0]!.parcels$,
    consumerControl.parcels$,
  );
  fromWorkers.subscribe({
    next: (parcel) => {
      if (parcel.handles.length > 0) {
        consumerControl.put('route', parcel.handles);
        status.textContent =
          'the route moved from the producer through the page to the ' +
          'consumer; parcels are flowing';
        return;
      }
      const report = JSON.parse(parcel.text()) as WorkerReport;
      renderStats(report.role, report.stats, report);
    },
    error: showError,
  });
  interval(REFRESH_INTERVAL_MS).subscribe(() => {
    renderStats('page (broker)', broker.stats());
  });
}

try {
  main();
} catch (error) {
  showError(error);
}
