// Command csrctl is csrd's operator CLI. It reads the same configuration
// file as csrd and works on the same database, and — for the commands that
// make, delete or marry keys, or reconcile — the same token; every
// subcommand lives in its own file and only wires packages together: the
// logic it runs belongs to those packages.
//
// Exit codes: 0 success (and -h at any level), 1 the operation failed,
// 2 the command line was wrong.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/csrd/csrd/version"
)

// root is csrctl's command tree. Commands that open the token say so in
// their help; the others read files only and work without it.
var root = &command{name: "csrctl", subs: []*command{
	{name: "audit", summary: "check the audit log; export the key that signs it", subs: []*command{
		{name: "verify", args: "[flags]", run: runAuditVerify,
			summary: "check the audit log's hash chain and the checkpoints signed in the token",
			about: "Recomputes every audit row's SHA-256 and the chain between rows, and checks the\n" +
				"checkpoints csrd signs in its HSM token. Trust comes from the keys you pin with\n" +
				"-pubkey: keep the output of 'csrctl audit pubkey' off this machine. Rows after\n" +
				"the newest checkpoint are covered by the chain alone. Exit 0: intact; exit 1:\n" +
				"tampered, or not proven as asked (the reason is printed). Reads the database\n" +
				"read-only; it may run while csrd runs."},
		{name: "pubkey", args: "[flags]", run: runAuditPubkey, token: true,
			summary: "print the public key of the audit key in the first token (PEM)",
			about: "Prints the public key of csrd's audit key, in its first configured token (made there\n" +
				"if it does not exist yet), as PEM. Keep a copy off this machine and pass it to\n" +
				"'csrctl audit verify -pubkey'. Each csrd node that shares the database has its own."},
	}},
	{name: "backup", args: "[flags] FILE", run: runBackup,
		summary: "a consistent copy of the live SQLite database (csrd may run)",
		about: "Writes a consistent copy of csrd's database to the new FILE while csrd runs\n" +
			"(SQLite's online backup API; never copy the database file itself). The keys are\n" +
			"not in it: they stay in the token. PostgreSQL: use pg_dump or WAL archiving.\n" +
			"See docs/operations.md, Durability and backups."},
	{name: "db", summary: "move the database", subs: []*command{
		{name: "migrate", args: "-from FILE [-to postgres://…] [flags]", run: runDBMigrate,
			summary: "copy a SQLite database into an empty PostgreSQL database",
			about: "Copies every record, certificate fact and audit row of a SQLite database into an\n" +
				"empty PostgreSQL database, keeping ids (request ids, token labels) and the audit\n" +
				"chain, which is verified in the target. Stop csrd first. The password comes from\n" +
				"database_password_file of -config (or PGPASSFILE)."},
	}},
	{name: "generate", args: "-subject DN -key-type TYPE [flags]", run: runGenerate, token: true,
		summary: "generate a key pair in the token and print its CSR (as POST Generate does)",
		about: "Generates a key pair in csrd's token and prints its CSR, exactly as POST\n" +
			"CSRGeneration/Generate does (same policy, same record, audited)."},
	{name: "import", args: "[flags] CERT.pem", run: runImport, token: true,
		summary: "marry an issued certificate to its key in the token",
		about: "Marries the issued certificate to its pending key (found by public key): the\n" +
			"certificate is stored next to the key in the token and the record becomes\n" +
			"married; prints the key's PKCS#11 URI."},
	{name: "key", summary: "end the life of a married key", subs: []*command{
		{name: "retire", args: "[flags] ID", run: runKeyRetire, token: true,
			summary: "destroy a married key in the token (audited first); the record becomes retired",
			about: "Ends the life of a married key: with its CA's revoke_on_retire its certificate is\n" +
				"revoked at the CA if it has not expired; the key is destroyed in the token after\n" +
				"its audit row, and the record becomes retired with its certificate facts kept."},
	}},
	{name: "nodes", args: "[flags]", run: runNodes,
		summary: "the csrd nodes sharing the database, their tokens and heartbeats",
		about: "Lists the csrd nodes registered in the database: live when their heartbeat is\n" +
			"younger than cluster.node_timeout."},
	{name: "pending", summary: "list, print or delete pending CSRs", subs: []*command{
		{name: "ls", args: "[flags]", run: runPendingLs,
			summary: "list pending CSRs, newest first",
			about:   "Lists the pending CSRs (keys waiting for their certificate) from csrd's database."},
		{name: "show", args: "[flags] ID", run: runPendingShow,
			summary: "print a pending CSR (PEM)",
			about:   "Prints the CSR of pending record ID, as GET CSRGeneration/Pending/ID does."},
		{name: "rm", args: "[flags] ID...", run: runPendingRm, token: true,
			summary: "delete pending CSRs and destroy their keys in the token",
			about: "Deletes the pending records and destroys their keys in the token, all or\n" +
				"nothing, as DELETE CSRGeneration/Pending does; audited."},
	}},
	{name: "policy", summary: "check a policy file", subs: []*command{
		{name: "check", args: "FILE", run: runPolicyCheck,
			summary: "validate a policy file offline and print the effective rules",
			about: "Parses FILE as csrd would on start-up or SIGHUP and prints every warning and,\n" +
				"per enrollment pattern, the rules that apply. Exit 1 lists every problem."},
	}},
	{name: "reconcile", args: "[flags]", run: runReconcile, token: true,
		summary: "compare token and database: finish interrupted work, list orphans and lost keys",
		about: "Compares csrd's database with its token: finishes interrupted operations,\n" +
			"marks records whose keys are gone lost and lists (with -destroy: destroys)\n" +
			"csrd-labelled objects no record accounts for. It may run while csrd runs:\n" +
			"records changed within -min-age are left to csrd."},
	{name: "renew", args: "[flags] ID", run: runRenew, token: true,
		summary: "renew a certificate csrd enrolled now: new key, new order, married, deploy hook",
		about: "Renews now the certificate of record ID (one csrd enrolled): a new key in the\n" +
			"token under the policy in force, a new order replacing the certificate, the new\n" +
			"certificate married, then the CA's deploy hook. The old key is retired after its\n" +
			"certificate expires (plus retire_after_expiry). While csrd runs, POST\n" +
			"/csrd/v1/keys/ID/renew asks it instead."},
	{name: "restore", args: "[flags] FILE", run: runRestore,
		summary: "put a backup back as the SQLite database (csrd stopped)",
		about: "Replaces csrd's database with the backup FILE. csrd must be stopped: the restore\n" +
			"is refused while csrd or another csrctl has the database open. Afterwards run\n" +
			"'csrctl reconcile': keys made after the backup are listed as orphans (destroyed\n" +
			"only with -destroy), records whose keys were deleted since are marked lost."},
	{name: "token", summary: "manage API tokens in the auth file; probe the HSM token", subs: []*command{
		{name: "create", args: "[flags] NAME", run: runTokenCreate,
			summary: "make a Bearer API token (printed once) in the auth file",
			about: "Creates an API token for 'Authorization: Bearer'. Only its SHA-256 is stored:\n" +
				"the token is printed once on stdout."},
		{name: "probe", args: "[flags]", run: runTokenProbe, token: true,
			summary: "print each configured HSM token's profile and try a key of each type csrd offers",
			about: "Logs in to every configured HSM token as csrd does and prints its profile: model,\n" +
				"firmware, mechanisms and key sizes, session cap, the template each key type takes,\n" +
				"the usage its keys get and whether CKA_MODIFIABLE is enforced. Then makes, signs\n" +
				"with, verifies and destroys one key of each type csrd would offer there (labelled\n" +
				"csrd-trial), leaving nothing behind, and records each profile in csrd's database\n" +
				"(when it exists) beside the one csrd recorded. Exit 1 when a round fails. Run it\n" +
				"first when pointing csrd at a new HSM (docs/tokens.md). -recorded prints the\n" +
				"recorded profiles instead, without logging in to any token."},
	}},
	{name: "user", summary: "manage Basic-auth users in the auth file", subs: []*command{
		{name: "add", args: "[flags] NAME", run: func(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
			return runUserAdd(fs, args, os.Stdin, stdout, stderr)
		},
			summary: "add a Basic-auth user (DOMAIN\\user or user) to the auth file",
			about: "Adds NAME (e.g. 'CORP\\enroll'; a bare name also matches any DOMAIN\\name) to the auth file.\n" +
				"Without -password-stdin a random password is generated and printed once."},
	}},
	{name: "version", run: runVersion,
		summary: "print csrctl's version and VCS revision",
		about:   "Prints the module version and the VCS revision csrctl was built from."},
}}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes the command line args and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	return root.execute(root.name, args, stdout, stderr)
}

func runVersion(fs *flag.FlagSet, args []string, stdout, _ io.Writer) error {
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("version takes no arguments, got %q", fs.Args())
	}
	fmt.Fprintln(stdout, version.Line("csrctl"))
	return nil
}
