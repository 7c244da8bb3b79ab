/**
 * REST API for A/B experiments (thin: parse, call control/experiments.ts, answer):
 *
 *   POST /api/v1/apps/:app/experiment       { variant, split, by? }  → 201 { experiment }
 *   GET  /api/v1/apps/:app/experiment                                 → { experiment | null, history }
 *   POST /api/v1/apps/:app/experiment/end   { keep: "a" | "b" }      → { experiment, rollout | null }
 *
 * Per-variant traffic figures are the app's traffic route's (`GET /api/v1/apps/:app/traffic`),
 * by revision.
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { assertName } from '../core/names.js';
import { endExperiment, experimentView, readExperiment, startExperiment, type ExperimentDeps } from './experiments.js';

const AppParams = Type.Object({ app: Type.String({ maxLength: 63 }) });
const StartBody = Type.Object(
  {
    variant: Type.Integer({ minimum: 1, description: "Variant b's revision number (variant a is the active revision)." }),
    split: Type.Integer({ minimum: 0, maximum: 100, description: "Variant b's share of the traffic, in percent." }),
    by: Type.Optional(
      Type.String({
        maxLength: 100,
        description:
          'What keeps a user on one variant: "cookie:NAME" (set by the router on a first visit) or "header:NAME". Default cookie:pilot_ab.',
      }),
    ),
  },
  { additionalProperties: false },
);
const EndBody = Type.Object({ keep: Type.Union([Type.Literal('a'), Type.Literal('b')]) }, { additionalProperties: false });

export function registerExperimentRoutes(api: FastifyInstance, deps: ExperimentDeps): void {
  api.post<{ Params: Static<typeof AppParams>; Body: Static<typeof StartBody> }>(
    '/api/v1/apps/:app/experiment',
    { schema: { tags: ['experiments'], summary: 'Start an A/B experiment', params: AppParams, body: StartBody } },
    async (req, reply) => {
      const e = await startExperiment(deps, assertName(req.params.app), req.body);
      void reply.status(201);
      return { experiment: experimentView(e) };
    },
  );

  api.get<{ Params: Static<typeof AppParams> }>(
    '/api/v1/apps/:app/experiment',
    { schema: { tags: ['experiments'], summary: "The app's running experiment, else its last one", params: AppParams } },
    async (req) => {
      const name = assertName(req.params.app);
      const e = await readExperiment(deps.store, name);
      return { experiment: e ? experimentView(e) : null };
    },
  );

  api.post<{ Params: Static<typeof AppParams>; Body: Static<typeof EndBody> }>(
    '/api/v1/apps/:app/experiment/end',
    { schema: { tags: ['experiments'], summary: 'End the running experiment, keeping variant a or b', params: AppParams, body: EndBody } },
    async (req) => {
      const r = await endExperiment(deps, assertName(req.params.app), req.body.keep);
      return { experiment: experimentView(r.experiment), rollout: r.rollout ?? null };
    },
  );
}
