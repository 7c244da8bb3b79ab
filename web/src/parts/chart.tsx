/** Charts: uPlot (bundled) for time series; a small SVG polyline for sparklines. */
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface Series {
  label: string;
  color: string;
  /** Draw points only (verdict markers), or a stepped line (weights). */
  kind?: 'line' | 'points' | 'step';
  scale?: string;
}

const cssVar = (name: string, dflt: string): string => getComputedStyle(document.documentElement).getPropertyValue(name).trim() || dflt;

/**
 * A time chart: `data[0]` is unix seconds, each next array one series. Updates in place
 * (setData) as figures arrive; follows its container's width.
 */
export function TimeChart(props: {
  title: string;
  series: Series[];
  data: (number | null)[][];
  height?: number;
  yLabel?: string;
  y2Label?: string;
  testId?: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const key = props.series.map((s) => s.label).join('|');

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const fg = cssVar('--muted', '#666');
    const grid = cssVar('--grid', '#8884');
    const scales: uPlot.Scales = { x: { time: true } };
    const axes: uPlot.Axis[] = [
      { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } },
      { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, label: props.yLabel, size: 56 },
    ];
    if (props.series.some((s) => s.scale === 'y2')) {
      scales.y2 = { range: [0, 100] };
      axes.push({ scale: 'y2', side: 1, stroke: fg, grid: { show: false }, label: props.y2Label, size: 48 });
    }
    const u = new uPlot(
      {
        width: Math.max(el.clientWidth, 200),
        height: props.height ?? 180,
        scales,
        axes,
        legend: { live: true },
        cursor: { drag: { x: false, y: false } },
        series: [
          {},
          ...props.series.map((s) => ({
            label: s.label,
            stroke: s.color,
            scale: s.scale ?? 'y',
            width: 2,
            spanGaps: false,
            ...(s.kind === 'points' ? { paths: () => null, points: { show: true, size: 9, fill: s.color } } : {}),
            ...(s.kind === 'step' ? { paths: uPlot.paths.stepped!({ align: 1 }) } : {}),
          })),
        ],
      },
      props.data as uPlot.AlignedData,
      el,
    );
    plot.current = u;
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(el.clientWidth, 200), height: props.height ?? 180 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [key]);

  useEffect(() => {
    plot.current?.setData(props.data as uPlot.AlignedData);
  }, [props.data]);

  return (
    <figure class="chart" data-testid={props.testId} data-points={props.data[0]?.length ?? 0}>
      <figcaption>{props.title}</figcaption>
      <div ref={box} />
    </figure>
  );
}

/** A sparkline of the last values (null: no figure then). */
export function Spark({ values, label }: { values: (number | null)[]; label: string }) {
  const w = 96;
  const h = 22;
  const nums = values.filter((v): v is number => v !== null);
  if (nums.length < 2)
    return (
      <span class="muted spark-empty" aria-label={`${label}: not enough figures yet`}>
        ·
      </span>
    );
  const max = Math.max(...nums, 1e-9);
  const step = w / Math.max(values.length - 1, 1);
  const points = values
    .map((v, i) => (v === null ? null : `${(i * step).toFixed(1)},${(h - 2 - (v / max) * (h - 4)).toFixed(1)}`))
    .filter((p) => p !== null)
    .join(' ');
  return (
    <svg class="spark" width={w} height={h} viewBox={`0 0 ${w} ${h}`} role="img" aria-label={`${label}, max ${max.toFixed(1)}`}>
      <polyline points={points} fill="none" stroke="currentColor" stroke-width="1.5" />
    </svg>
  );
}
