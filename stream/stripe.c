/* SPDX-License-Identifier: MIT */
/* Stripe scheduler and ack/replay bookkeeping (PROTOCOL.md §2.3, §5.3); contract in stripe.h. */
#include "stripe.h"

#include <errno.h>
#include <string.h>

void stripe_init(struct stripe *sp)
{
	memset(sp, 0, sizeof(*sp));
}

int stripe_pick(struct stripe *sp, uint64_t open, const uint64_t queued[STRIPE_LINKS])
{
	int best = -1;

	for (unsigned k = 0; k < STRIPE_LINKS; k++) {
		unsigned i = (sp->rr + k) % STRIPE_LINKS;

		if (!(open >> i & 1))
			continue;
		if (best < 0 || queued[i] < queued[best])
			best = (int)i;
	}
	if (best >= 0)
		sp->rr = ((unsigned)best + 1) % STRIPE_LINKS;
	return best;
}

int stripe_first(uint64_t open)
{
	return open ? __builtin_ctzll(open) : -1;
}

void stripe_list_push(struct stripe_list *l, struct stripe_ent *e)
{
	e->next = NULL;
	if (l->tail)
		l->tail->next = e;
	else
		l->head = e;
	l->tail = e;
	l->count++;
}

struct stripe_ent *stripe_list_pop(struct stripe_list *l)
{
	struct stripe_ent *e = l->head;

	if (!e)
		return NULL;
	l->head = e->next;
	if (!l->head)
		l->tail = NULL;
	l->count--;
	e->next = NULL;
	return e;
}

struct stripe_ent *stripe_list_acked(struct stripe_list *l, uint64_t acked)
{
	if (!l->head || l->head->seq >= acked)
		return NULL;
	return stripe_list_pop(l);
}

bool stripe_must_resend(const struct stripe_ent *e, int lost, uint64_t alive)
{
	return e->link < 0 || e->link >= STRIPE_LINKS || e->link == lost || !(alive >> e->link & 1);
}

enum stripe_loss stripe_on_loss(const struct stripe_loss_facts *f)
{
	bool busy = !f->failed && !f->finished && f->open_streams > 0;

	if (f->live_after == 0) {
		/* Without reconnection the session ends here; with it, the timer waits for a rejoin. */
		if (!f->reconnect)
			return busy ? STRIPE_LOSS_FAIL : STRIPE_LOSS_QUIET;
		if (!busy)
			return STRIPE_LOSS_QUIET;
		return f->clean ? STRIPE_LOSS_WAIT_REKEY : STRIPE_LOSS_WAIT;
	}
	/* Nothing in flight: a peer closing after its work is done. */
	return busy ? STRIPE_LOSS_RESEND : STRIPE_LOSS_QUIET;
}

unsigned stripe_resync_plan(const struct stripe_resync_facts *f)
{
	unsigned r;

	if (f->failed)
		return 0;
	r = STRIPE_RS_CHUNKS | STRIPE_RS_ACK;
	if (f->client && f->opened)
		r |= STRIPE_RS_OPEN;
	if (!f->client && f->opened && f->open_ack)
		r |= STRIPE_RS_OPENED;
	if (f->end_sent && !f->verified)
		r |= STRIPE_RS_END;
	if (f->in_done)
		r |= STRIPE_RS_VERIFIED;
	return r;
}

int stripe_ctl_admit(uint64_t queued, uint32_t len)
{
	if (len > STRIPE_CTL_MAX_BYTES || queued > STRIPE_CTL_MAX_BYTES - len)
		return -ENOBUFS;
	return 0;
}
