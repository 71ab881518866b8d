-- Anonymous polls store no link between a person and their choice
-- (docs/signalling.md, "Anonymous polls"). `poll_ballots` still holds who
-- voted (its primary key is what makes "votes once" hold); what they chose
-- goes only into a count per option, with no user, no time and no row per
-- vote, so nothing joins the two. Named polls keep `poll_choices`, which the
-- results CSV lists.
create table poll_tallies (
    option_id integer primary key references poll_options(id),
    poll_id integer not null references polls(id),
    votes integer not null default 0
);
create index poll_tallies_poll on poll_tallies(poll_id);

-- Anonymous polls voted in before this: their choices become counts, and
-- the rows that linked each person to a choice go.
insert into poll_tallies (option_id, poll_id, votes)
select o.id, o.poll_id, (select count(*) from poll_choices c where c.option_id = o.id)
from poll_options o join polls p on p.id = o.poll_id
where p.anonymous = 1;
delete from poll_choices where poll_id in (select id from polls where anonymous = 1);
