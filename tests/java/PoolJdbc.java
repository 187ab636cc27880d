// pgjdbc through a transaction-pooled rdsconn proxy: four connections on
// two server connections, server-side prepared statements from their
// first use (prepareThreshold=1), transactions, an error and a rollback.
// Run from source: java -cp /usr/share/java/postgresql.jar PoolJdbc.java PORT
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;

public class PoolJdbc {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0]
                + "/appdb?user=app&sslmode=disable&prepareThreshold=1";
        Thread[] threads = new Thread[4];
        Exception[] failure = new Exception[1];
        for (int n = 0; n < threads.length; n++) {
            final int k = n;
            threads[n] = new Thread(() -> {
                try {
                    work(url, k);
                } catch (Exception e) {
                    synchronized (failure) {
                        failure[0] = e;
                    }
                }
            });
            threads[n].start();
        }
        for (Thread t : threads) {
            t.join();
        }
        if (failure[0] != null) {
            failure[0].printStackTrace();
            System.exit(1);
        }
        System.out.println("pgjdbc ok");
    }

    static void work(String url, int k) throws Exception {
        try (Connection c = DriverManager.getConnection(url)) {
            for (int i = 0; i < 30; i++) {
                try (PreparedStatement ps = c.prepareStatement("SELECT ?::int * 2")) {
                    ps.setInt(1, i);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        if (rs.getInt(1) != i * 2) {
                            throw new IllegalStateException("wrong result");
                        }
                    }
                }
                c.setAutoCommit(false);
                try (PreparedStatement ps = c.prepareStatement("SELECT ?::text")) {
                    ps.setString(1, Integer.toString(k));
                    ps.executeQuery().close();
                }
                c.commit();
                try (PreparedStatement ps = c.prepareStatement("SELECT 1 / ?::int")) {
                    ps.setInt(1, 0);
                    ps.executeQuery().close();
                    throw new IllegalStateException("no error");
                } catch (SQLException e) {
                    if (!"22012".equals(e.getSQLState())) {
                        throw e;
                    }
                    c.rollback();
                }
                c.setAutoCommit(true);
            }
        }
    }
}
